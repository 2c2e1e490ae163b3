# Two commands: `make demo` and `make test`. Each sets itself up on a machine that has only
# Python 3.11 and make: a virtualenv in .venv with the versions pinned in requirements.lock.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint format bench bench-scale screenshot clean install lock

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c requirements.lock -e ".[test]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/digestbot demo

# Everything the tests need: the virtualenv, then tools/test-machine (Debian packages,
# PostgreSQL and its test database; as root it installs and starts them, otherwise it says
# what is missing). The suite runs twice: on today's clock, then with every Python process it
# starts a year ahead (tests/clock_ahead/sitecustomize.py), so no test depends on the date.
test: $(STAMP)
	bash tools/test-machine
	@$(MAKE) --no-print-directory node_modules
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest
	@echo "== the whole suite again, with the clock a year ahead"
	TESTS_CLOCK_AHEAD_DAYS=365 PYTHONPATH=$(CURDIR)/tests/clock_ahead $(BIN)/pytest -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	@for b in startup ingest score relevance render digests send signing due web; do \
		echo "== bench/$$b.py"; $(BIN)/python bench/$$b.py || exit 1; done

# 1,000,000 readers in PostgreSQL on 127.0.0.1 (a schema of its own, dropped afterwards).
bench-scale: $(STAMP)
	$(BIN)/python bench/scale.py

# Screenshots of a rendered digest (desktop, phone, dark mode) in test-artifacts/.
screenshot: $(STAMP)
	$(BIN)/pytest -q tests/test_render_browser.py

# Regenerate the lock after changing dependencies in pyproject.toml.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet ".[test]"
	.venv-lock/bin/pip freeze --exclude digestbot > requirements.lock
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) demo build *.egg-info .pytest_cache .ruff_cache

# The email checks' node tools (tests/node/), pinned in package-lock.json.
node_modules: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch node_modules
