"""What a run concludes and how it is written: matrix.json (the contract), matrix.md, report.html and
Allure metadata as cells finish; the go/no-go ``verdict``, endpoint ``fingerprint``s and nightly
``drift``, tied together by ``conclusions``."""
