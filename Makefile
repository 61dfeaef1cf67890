# Two commands from a fresh clone: `make demo` and `make test` (each creates .venv when absent).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/mtkd: pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $(BIN)/mtkd

.PHONY: demo test bench
demo: $(BIN)/mtkd
	$(BIN)/mtkd demo

test: $(BIN)/mtkd
	$(BIN)/pytest

bench: $(BIN)/mtkd
	$(BIN)/python benchmarks/step_overhead.py
