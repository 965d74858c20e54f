# Two commands on a fresh machine: `make demo` runs the main job, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,postgres,demo]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/synthcohort demo synthcohort-demo

test: $(STAMP)
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools
	$(BIN)/mypy
	$(BIN)/pytest -n 2

lint: $(STAMP)
	$(BIN)/ruff check src tests bench tools
	$(BIN)/mypy

bench: $(STAMP)
	for f in bench/*_bench.py; do $(BIN)/python "$$f" || exit 1; done

clean:
	rm -rf $(VENV) synthcohort-demo
