"""Inference engines that speak the OpenAI API: vLLM (own venv), the transformers fallback, external URLs.

    preflab engine start --model PATH [--backend vllm|transformers] [--lora NAME=PATH ...]
    preflab engine list

`serving.engines.registry` is the state file (engines.json under db.paths.home()) and the lookup the
gateway and the sampler use: `list_engines()`, `resolve_model(name)`. `serving.engines.launcher` starts
and stops local engines as subprocesses.
"""
