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
# Exit with one line unless this Python is within pyproject.toml's requires-python (argument: how to fix it): a too
# old one otherwise stopped at torch's wheel, "No matching distribution found for torch==2.13.0", as if there were none;
# a too new one (3.14) sent pip to build scipy and antspyx from source after installing torch.
CHECK_PYTHON := import platform, re, sys; \
    spec = re.search(r'requires-python = (.*)', open('pyproject.toml').read()).group(1); \
    low, high = (tuple(map(int, m.groups())) if m else None \
                 for m in (re.search(r'>=\s*(\d+)\.(\d+)', spec), re.search(r'<\s*(\d+)\.(\d+)', spec))); \
    words = '%d.%d to %d.%d' % (low + (high[0], high[1] - 1)) if high else '%d.%d or newer' % low; \
    sys.exit(None if low <= sys.version_info[:2] and (high is None or sys.version_info[:2] < high) else \
             'make setup: %s is Python %s; elr-mri needs %s: %s' \
             % (sys.executable, platform.python_version(), words, sys.argv[1]))
# The last line after a failed pip, whose own ("No matching distribution found for torch==2.13.0") reads as if there
# were no such release where the index was out of reach. Exported, so that the echoed recipe does not repeat it.
export ELR_MRI_SETUP_HINT := pip's "from versions: none" means that its package index was out of reach (the network, \
a proxy, the index `pip config list` names) or held no wheel for this Python and platform; fix that and run make \
setup again, which keeps what is installed
PIP_FAILED = { echo "make setup: pip could not install $(1) (above). $$ELR_MRI_SETUP_HINT" >&2; exit 1; }
# .venv from $(PYTHON) where it has no python that runs: none yet, or one whose python was removed (--clear: what it
# holds was for that python)
NEW_VENV = { command -v $(PYTHON) >/dev/null || { echo "make setup: no $(PYTHON) on PATH: install Python 3, or name \
one: make setup PYTHON=/path/to/python3" >&2; exit 1; }; \
    $(PYTHON) -c "$(CHECK_PYTHON)" "make setup PYTHON=<a python3 in that range>" && $(PYTHON) -m venv --clear $(VENV); }

.PHONY: setup test test-slow demo demo-digits clean

setup: $(STAMP)

# A .venv without pip (what a python3 lacking ensurepip, Debian's without python3-venv, leaves behind; `uv venv`'s) gets
# it, its packages kept: every run stopped at "No module named pip".
$(STAMP): pyproject.toml
	@test ! -x $(PY) || $(PY) -c "$(CHECK_PYTHON)" "rm -rf $(VENV), then make setup PYTHON=<a python3 in that range>"
	@$(PY) -c "" 2>/dev/null || $(NEW_VENV)
	@$(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)" \
	    || $(call PIP_FAILED,$(TORCH_SPEC))
	$(PY) -m pip install --quiet -e ".[dev]" || $(call PIP_FAILED,elr-mri's dependencies)
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
