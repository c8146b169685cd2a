# Run Studio. `make run` starts the studio; `make test` runs the whole test suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: run test bench soak lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamps: reinstall only when the requirement files change.
$(VENV)/.runtime: requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.dev: requirements-dev.txt $(VENV)/.runtime
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

## run: the studio on 127.0.0.1:$(PORT) with workers and poller (SQLite + embedded broker by default)
run: $(VENV)/.runtime
	exec $(BIN)/python manage.py up --port $(PORT)

## test: the whole suite (browser tests need Debian's chromium: apt-get install -y chromium)
test: $(VENV)/.dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## bench: performance figures (not pass/fail)
bench: $(VENV)/.dev
	$(BIN)/python -m tests.benchmarks $(BENCH_ARGS)

## soak: long load and fuzzing runs
soak: $(VENV)/.dev
	$(BIN)/python -m tests.benchmarks --soak

lint: $(VENV)/.dev
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf var/test tests/artifacts
