# Two commands from a fresh clone: `make demo` and `make test` (each creates .venv when absent).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/mtkd: pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $(BIN)/mtkd

.PHONY: demo test bench bench-gpu
demo: $(BIN)/mtkd
	$(BIN)/mtkd demo

test: $(BIN)/mtkd
	$(BIN)/pytest

bench: $(BIN)/mtkd
	$(BIN)/python benchmarks/step_overhead.py
	cd benchmarks && ../$(BIN)/python kd_overhead.py --no-memory
	cd benchmarks && ../$(BIN)/python weighting_cost.py --grads
	cd benchmarks && ../$(BIN)/python weighting_cost.py --methods mgda,imtl,nashmtl,cagrad,alignedmtl,upgrad,dualproj,pcgrad --update-every 4 --no-memory
	cd benchmarks && ../$(BIN)/python eval_speed.py

bench-gpu: $(BIN)/mtkd
	bash benchmarks/gpu_suite.sh
