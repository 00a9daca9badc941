# modelyard: `make demo` runs the whole pipeline on the embedded default; `make test` the suite.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MODELYARD_HOME ?= $(CURDIR)/.local
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: demo test airflow mlflow-ui bench lint clean

# torch is installed first and pinned so no other requirement can pull a CUDA build.
$(STAMP): requirements.txt requirements-dev.txt trainer/requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q torch==2.13.0 -r requirements.txt -r trainer/requirements.txt \
		-r requirements-dev.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

demo: $(STAMP)
	$(BIN)/modelyard demo

# Two workers: one runs the tests marked `scheduler`, one after another, while the other takes
# the remaining files (tests/conftest.py makes the units). Those tests mostly wait on a
# scheduler, so one worker left a core idle. TEST_WORKERS=0 runs everything in this process.
# pytest exits 5 when it collected nothing: that is a failure here, and make fails on it too.
TEST_WORKERS ?= 2
test: $(STAMP)
	@$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing" >&2; fi; exit $$status

airflow: $(STAMP)
	$(BIN)/python -m modelyard.airflow_env standalone

mlflow-ui: $(STAMP)
	$(BIN)/python -m modelyard.airflow_env mlflow-ui

# ruff is pinned in requirements-dev.txt; CI runs this before the tests.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python bench/dag_parse.py
	$(BIN)/python bench/curation.py
	$(BIN)/python bench/trainer.py
	$(BIN)/python bench/gateway.py

clean:
	rm -rf .local

# Proves the real GPU path on an NVIDIA machine (own venv from trainer/requirements-gpu.txt,
# Unsloth 4-bit QLoRA, kill + resume, GGUF when llama.cpp is present); not part of `make test`.
# Options: make gpu-check GPU_CHECK_ARGS="--base-model PATH_OR_HUB_NAME --steps 60"
.PHONY: gpu-check
gpu-check:
	$(PYTHON) bench/gpu_check.py $(GPU_CHECK_ARGS)
