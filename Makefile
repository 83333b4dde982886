# smartrec — the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev

.PHONY: demo test lint format bench clean services wheel-smoke docs mutation

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# One install with the dev extras serves both targets; re-run when pyproject changes.
$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/smartrec demo $(DEMO_ARGS)

services:
	bash scripts/ensure-services.sh

# Test files run in parallel, one file per worker at a time (module fixtures are built once);
# PYTEST_XDIST= runs them in one process (e.g. with -x or a debugger).
PYTEST_XDIST ?= -n auto --maxprocesses 4 --dist loadfile

test: $(STAMP) services
	$(PY) -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir site
	SMOKE_PYTHON=$(abspath $(PY)) bash scripts/wheel-smoke.sh

# Build the sdist and wheel, install the wheel into a fresh venv outside the tree, smoke-test it.
wheel-smoke: $(STAMP)
	SMOKE_PYTHON=$(abspath $(PY)) bash scripts/wheel-smoke.sh

# The generated docs pages (scripts/gen_docs.py), then the MkDocs site into site/.
docs: $(STAMP)
	$(PY) scripts/gen_docs.py
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

bench: $(STAMP) services
	$(PY) benchmarks/ingest.py
	$(PY) benchmarks/serve.py

# Mutation testing of the core modules (mutmut, minutes per module): make mutation, or
# make mutation MODULES="rules filters". Score and equivalent mutants: BENCHMARKS.md section 10.
mutation: $(STAMP)
	bash scripts/mutation.sh $(MODULES)

clean:
	rm -rf $(VENV) .smartrec .pytest_cache .mypy_cache .ruff_cache
