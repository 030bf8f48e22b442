# Set-up is part of every target: .venv is (re)built when missing or when settings.ini/setup.py change.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-all sync readme clean-nbs export bench

$(STAMP): settings.ini setup.py pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

install: $(STAMP)

## Fast checks (CI): notebooks clean and in sync with advbct/, notebook tests, canary, pytest.
test: $(STAMP)
	$(BIN)/python tools/check_sync.py
	$(BIN)/nbdev_test --n_workers 2
	$(BIN)/python tools/canary.py
	$(BIN)/python -m pytest -q -m "not slow" tests/

## Everything, the slow notebook cells and slow pytest checks included.
test-all: $(STAMP)
	$(BIN)/python tools/check_sync.py
	$(BIN)/nbdev_test --n_workers 2 --flags slow
	$(BIN)/python tools/canary.py
	$(BIN)/python -m pytest -q tests/

## Developer helpers: clean notebooks, export the package, regenerate README.md.
sync: $(STAMP)
	$(BIN)/nbdev_clean
	$(BIN)/nbdev_export
	$(BIN)/python tools/readme.py

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_eval.py

## Regenerate the paper's tables and figures (embedded landmark benchmark, cpu profile) into outputs/.
# SEEDS: run seeds as a YAML list, e.g. make reproduce SEEDS="[0,1,2]"; PROFILE: cpu (pretrained Lite0, default), scratch (from-scratch CNN), smoke or paper
# DEVICE: cpu (default), cuda or auto; DATA_ROOT: the dataset folder (the paper profile's data layout; empty: the embedded benchmark)
# WORKERS: training processes (empty: 2 on a CPU, one per visible GPU with DEVICE=cuda, each on its own GPU; 1: one run at a time in the notebook's kernel)
# OVERRIDES: TrainConfig changes for every run, as `advbct train --set` takes them, e.g. OVERRIDES="epochs=3 batch_size=128"
SEEDS ?= [0]
PROFILE ?= cpu
DEVICE ?= cpu
WORKERS ?=
OVERRIDES ?=
DATA_ROOT ?=
.PHONY: reproduce
reproduce: $(STAMP)
	@mkdir -p outputs
	@# one line per finished run comes through papermill's log; cell markers, blank lines and the kernels' start-up warnings are dropped
	set -o pipefail; PYDEVD_DISABLE_FILE_VALIDATION=1 $(BIN)/papermill --log-output --no-progress-bar nbs/reproduce.ipynb outputs/reproduce.ipynb \
	  -p profile $(PROFILE) -p device $(DEVICE) $(if $(WORKERS),-p workers $(WORKERS),) $(if $(DATA_ROOT),-p data_root "$(DATA_ROOT)",) \
	  -p overrides "$(OVERRIDES)" -p out_dir outputs -y "seeds: $(SEEDS)" -k python3 2>&1 \
	  | grep --line-buffered -v -E '^\s*$$|^(Executing|Ending) Cell|running over TCP without encryption|IProgress not found|from .autonotebook import'
	@echo "done: outputs/summary.md, tables in outputs/tables/, figures in outputs/figures/, executed notebooks in outputs/notebooks/"
