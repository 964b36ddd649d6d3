"""Report writers: matrix.json (the contract), matrix.md (for people), both written as cells finish."""
