# Two commands on a fresh machine with Python 3.11 and make:
#   make run    set up .venv, certificates and the SQLite database, start the server
#   make test   same set-up, then the whole test suite (ruff included)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test lint db-test bench clean

$(INSTALLED): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

run: $(INSTALLED)
	$(BIN)/dls serve $(ARGS)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The database tests only, against DLS_TEST_DATABASE_URL (see .ci/run for PostgreSQL).
db-test: $(INSTALLED)
	$(BIN)/python -m pytest -m db $(PYTEST_ARGS)

# Benchmarks print figures; see bench/README.md and BENCHMARKS.md.
bench: $(INSTALLED)
	$(BIN)/python bench/files.py $(ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis
