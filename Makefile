# The two commands a newcomer types: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch 2.13.0: the CPU wheel where pip's configured index holds it (as on CI); on plain PyPI, Linux gets the
# CUDA build unless TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu". A GPU user installs
# a CUDA build into .venv first (README) and this is skipped.
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
STAMP := $(VENV)/.installed

.PHONY: setup test test-slow demo demo-digits clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

demo: $(STAMP)
	$(PY) scripts/mri_demo.py --out demo

demo-digits: $(STAMP)
	$(PY) scripts/digits_benchmark.py --out demo/digits

clean:  # the environment and the demos; training runs in runs/ are left alone
	rm -rf $(VENV) demo
