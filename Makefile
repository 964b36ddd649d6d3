# Two entry points: `make compat` (the compatibility run) and `make test` (the harness's own tests).
# Both create .venv and install the project into it on first use; pass pytest options with ARGS="...".
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: compat test bench debian-tools

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

compat: $(STAMP)
	$(PY) -m pytest $(ARGS)

test: $(STAMP) debian-tools
	$(PY) -m pytest tests $(ARGS)

# The tests drive Debian's chromium (report.html in a real browser, through playwright: no browser
# download) and run a Vast curl reproduction with jq and curl; installed when missing.
DEBIAN_TOOLS := chromium jq curl
debian-tools:
	@missing=$$(for t in $(DEBIAN_TOOLS); do command -v $$t >/dev/null || echo $$t; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; \
	fi

bench: $(STAMP)
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done
