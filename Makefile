# The two set-up commands of the README: `make run` and `make test`.
# Each creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: run test browser fuzz

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime-installed: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

run: $(VENV)/.runtime-installed
	$(BIN)/python wsgi.py

# The admin page's browser test drives Debian's Chromium (never a downloaded browser).
# Installed here when missing and we may (root or sudo); otherwise the test says what to do.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if ! command -v apt-get >/dev/null 2>&1; then echo "note: install Chromium to run the browser test" >&2; \
	  elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  elif sudo -n true 2>/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: 'sudo apt-get install chromium' to run the browser test" >&2; fi; }

# The package layers (.importlinter) first; pytest exits 5 when it collected no tests, which must
# fail, not pass silently.
test: $(VENV)/.dev-installed browser
	$(BIN)/lint-imports --no-cache
	@$(BIN)/python -m pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; \
	exit $$status

# Schemathesis over every operation of the served OpenAPI document, in-process (no network),
# all checks; FUZZ_EXAMPLES per operation (the test suite runs a short pass over a few).
FUZZ_EXAMPLES ?= 50
fuzz: $(VENV)/.dev-installed
	FUZZ_ALL=1 FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -n 0 tests/security/test_fuzz.py
