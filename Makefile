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

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	@for b in ingest score relevance render digests send due web; do \
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
