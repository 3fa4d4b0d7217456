# The two commands of the README do all the set-up on a fresh machine:
#   make demo   creates .venv, installs, runs the main job on embedded defaults
#   make test   creates/reuses .venv, runs the tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.placement-search-installed

.PHONY: demo test lint bench install clean

$(STAMP): pyproject.toml scripts/bootstrap.py
	$(PYTHON) scripts/bootstrap.py --venv $(VENV)
	@touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/placement-search run studies/quickstart.toml
	$(BIN)/placement-search report --study quickstart -o quickstart-report.html

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check placement_search tests benchmarks scripts
	$(BIN)/ruff format --check placement_search tests benchmarks scripts
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/pip install -q -e '.[bench]'
	@for b in benchmarks/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
