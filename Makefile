# The two commands: `make demo` and `make test`. Both bootstrap .venv when needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup demo test lint format bench reliability repro clean

# Reinstalls only when pyproject.toml changes; a finished setup costs a file check.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"MUMA needs Python 3.11, found {sys.version.split()[0]}"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch==2.13.0 is pinned in pyproject.toml: pip takes the CPU wheel from the local wheel
	# directory; an unpinned torch would pull a CUDA build of several GB.
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/muma demo

# pytest exits 5 when it collects no test: say so instead of failing obscurely.
test: setup
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The benchmark-only peer (DeepCTR-Torch) comes from the `bench` extra; torch stays pinned.
bench: setup
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# The reliability suite (tests marked `reliability`: faults, bad input, idempotency, load,
# security) with the 10-minute load (100,000 users, 50,000 items); writes
# reports/reliability.json and docs/reliability.md.
# `make test` runs the same tests with a 20 s load on a small world, without the idempotent
# reruns of every DAG task (MUMA_RELIABILITY_FULL; several minutes of Spark and GX).
RELIABILITY_LOAD_SECONDS ?= 600
reliability: setup
	MUMA_RELIABILITY_LOAD_SECONDS=$(RELIABILITY_LOAD_SECONDS) \
	MUMA_RELIABILITY_LOAD_USERS=100000 MUMA_RELIABILITY_LOAD_ITEMS=50000 \
	MUMA_RELIABILITY_FULL=1 \
	MUMA_RELIABILITY_REPORT=reports/reliability.json \
	$(BIN)/python -m pytest -m reliability -p no:cacheprovider $(PYTEST_ARGS); rc=$$?; \
	$(BIN)/python -m bench.reliability_doc reports/reliability.json; exit $$rc

repro: setup
	source $(BIN)/activate && dvc repro

clean:
	rm -rf data reports/demo .pytest_cache
