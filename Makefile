# One command sets up and tests: `make test`.
# torch is installed first, pinned to the CPU wheel, so no CUDA build is pulled in by a range.
# Everything is installed (the all extra: server, train, dashboard) plus the dev tools.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install test lint bench up clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[all,dev]"
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .

test: install lint
	$(BIN)/python -m pytest

up: install
	$(BIN)/e2h up $(UP_ARGS)

bench: install
	$(BIN)/python benchmarks/bench_schedulers.py
	$(BIN)/python benchmarks/bench_tasks.py
	$(BIN)/python benchmarks/bench_ingest.py
	$(BIN)/python benchmarks/bench_trainer_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
