# gridloop: two commands do all set-up on a fresh machine — `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?= var

.PHONY: run test lint typecheck unit bench clean

# The virtualenv is rebuilt whenever pyproject.toml changes.
$(VENV)/.installed-run: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "gridloop needs Python >= 3.11"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed-run
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

## make run: simulate one day of Yuanqu into a fresh embedded store and print the board.
run: $(VENV)/.installed-run
	$(BIN)/gridloop --data-dir $(DATA) simulate --preset yuanqu --days 1 --fresh

## make test: lint, type-check and run the whole suite.
test: lint typecheck unit

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

unit: $(VENV)/.installed-dev
	$(BIN)/pytest -q

## make bench: each path against the raw library doing the same work (see docs/benchmarks.md).
bench: $(VENV)/.installed-run
	$(BIN)/python -m ops.bench $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) $(DATA) .mypy_cache .ruff_cache .pytest_cache .hypothesis
