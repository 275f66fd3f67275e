# Diiwaan — `make run` serves a working system on a fresh clone; `make test` checks it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test lint bench browser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEV_STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(STAMP)

run: $(STAMP)
	$(BIN)/diiwaan init
	$(BIN)/diiwaan serve --host 127.0.0.1 --port 5000

# Browser tests need Debian's Chromium; install it when missing (never a downloaded build).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "could not install chromium: browser tests will fail"; }

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# alembic check runs against a freshly migrated database (the test database when
# DIIWAAN_DATABASE_URL is set, a throwaway SQLite file otherwise).
test: $(DEV_STAMP) browser
	$(BIN)/ruff check .
	@tmp=$$(mktemp -d) && export DIIWAAN_DATA_DIR=$$tmp \
	  DIIWAAN_DATABASE_URL=$${DIIWAAN_DATABASE_URL:-sqlite:///$$tmp/check.db} \
	  && $(BIN)/diiwaan db upgrade && $(BIN)/alembic check; rc=$$?; rm -rf $$tmp; exit $$rc
	$(BIN)/pytest -q

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@ $(DEV_STAMP) $(STAMP)

bench: $(BENCH_STAMP)
	@for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) var .pytest_cache
