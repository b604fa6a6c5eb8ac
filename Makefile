# Quick start: `make demo` sets everything up and runs the main job; `make test` runs the test suite (setup
# installs the dev and ray extras, so the leaderboard's sweep on Ray is tested too).
PYTHON ?= python3
VENV ?= .venv
VENV_FLAGS ?=
# A CPU build is taken when no torch is importable; keep your own (CUDA) torch with
# VENV_FLAGS=--system-site-packages, or name another build in TORCH_SPEC.
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python

.PHONY: setup demo test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[dev,training,ray]"
	touch $@

demo: setup
	$(PY) -m restore_gym demo

test: setup
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
