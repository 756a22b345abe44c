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

$(VLLM_VENV)/.installed:
	@echo "vLLM environment: filled in by the engines work"
	mkdir -p $(VLLM_VENV) && touch $@

# Playwright drives Debian's chromium (no browser download from a CDN).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

test: install vllm-env browser
	$(VPY) -m pytest -q

test-fast: install
	$(VPY) -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install
	$(VPY) bench/pairs.py

demo: install
	$(VENV)/bin/preflab import demo/data/oasst2_sample.jsonl --format oasst --dataset oasst-demo
	$(VENV)/bin/preflab stats --dataset oasst-demo

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache .ruff_cache
