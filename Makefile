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
# download) and run a Vast curl reproduction with jq and curl; installed when missing, as root or through
# password-less sudo. Anyone else (a laptop) gets a note and the tests that need them skip, saying why.
DEBIAN_TOOLS ?= chromium jq curl
debian-tools:
	@missing=$$(for t in $(DEBIAN_TOOLS); do command -v $$t >/dev/null || echo $$t; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null; then \
	  echo "note: $$missing not installed (no apt-get here): the tests that need them skip"; exit 0; \
	elif [ "$$(id -u)" = 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	else \
	  echo "note: $$missing not installed (not root, no password-less sudo): the tests that need them skip;" \
	       "to run them: sudo apt-get install -y $$missing"; exit 0; \
	fi; \
	echo "installing Debian packages: $$missing"; \
	$$sudo apt-get update -qq && $$sudo apt-get install -y -qq $$missing >/dev/null

bench: $(STAMP)
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done
