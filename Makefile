# Two entry points for a newcomer: `make demo` and `make test`.
# Both create .venv (once), put the CPU build of torch in it unless a torch is already importable there,
# then install mjepa in editable mode. Set VENV=... to use another environment (for example one with
# your own CUDA torch: `make test VENV=/path/to/env`).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mjepa-installed

.PHONY: install demo test test-fast lint format bench

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "torch==2.13.0"
	$(PY) -m pip install -e ".[test]"
	# X-ARES's encoder checker, for the tests: its package asks for a torchaudio that does not load beside every
	# torch, and only the checker module (torch and loguru) is used.
	$(PY) -m pip install --no-deps "xares==0.1.3"
	$(PY) -m pip install "loguru>=0.7"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mjepa demo

test: $(STAMP) lint
	$(PY) -m pytest -q

# The suite without the tests marked slow (end-to-end runs, subprocesses): about a tenth of the time.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks hubconf.py
	$(VENV)/bin/ruff format --check src tests benchmarks hubconf.py

format: $(STAMP)
	$(VENV)/bin/ruff check --fix src tests benchmarks hubconf.py
	$(VENV)/bin/ruff format src tests benchmarks hubconf.py

bench: $(STAMP)
	$(PY) benchmarks/bench_step.py
