# foleybench: every target sets up .venv first when it is missing or stale
# (pyproject.toml or requirements.lock newer than the last install).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup bench test lint perf train leaderboard drift clean

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python && $(BIN)/python -c "import sys" 2>/dev/null || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

setup: $(STAMP)

bench: setup ## the main job on the embedded default (synthfoley), then the drift check
	$(BIN)/foleybench bench --all
	$(BIN)/foleybench drift --all --failures-only

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check foleybench metrics baselines benchmarks tests

perf: setup ## speed benchmarks -> leaderboard/perf.md and leaderboard/perf.json
	$(BIN)/python benchmarks/perf.py

train: setup ## retrain every family's shipped tiny checkpoint; paste the printed records, update the goldens
	$(BIN)/python -m foleybench.train --all

leaderboard: setup
	$(BIN)/foleybench leaderboard

drift: setup
	$(BIN)/foleybench drift --all

clean:
	rm -rf runs .pytest_cache
