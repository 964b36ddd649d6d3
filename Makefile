# Two entry points: `make compat` (the compatibility run) and `make test` (the harness's own tests).
# Both create .venv and install the project into it on first use; pass pytest options with ARGS="...".
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: compat test bench

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

compat: $(STAMP)
	$(PY) -m pytest $(ARGS)

test: $(STAMP)
	$(PY) -m pytest tests $(ARGS)

bench: $(STAMP)
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done
