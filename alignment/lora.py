"""LoRA defaults that fit the architecture: W' = W + (alpha/r) * B A on every Linear of the transformer blocks.

Target modules are found from the model's own Linear layer names (q_proj, k_proj, ... on Qwen2/Llama;
c_attn, c_proj on GPT-2 style models), so a new architecture needs no table entry. The output head
(lm_head) is left alone; a reward model's `score` head is trained in full (PEFT's SEQ_CLS task saves it).
"""

from __future__ import annotations

import torch.nn as nn

# Never adapted: output heads and classifier heads (the score head is trained fully instead).
_HEADS = {"lm_head", "score", "classifier", "embed_out", "output", "v_head", "value_head"}


def linear_module_names(model: nn.Module) -> list[str]:
    """Distinct short names of the Linear layers inside the model's blocks (heads excluded), sorted."""
    names = set()
    for full_name, module in model.named_modules():
        if isinstance(module, nn.Linear) or type(module).__name__ in ("Conv1D", "Linear8bitLt", "Linear4bit"):
            short = full_name.rsplit(".", 1)[-1]
            if short not in _HEADS:
                names.add(short)
    return sorted(names)


def lora_config_for(model: nn.Module, cfg, *, task_type: str = "CAUSAL_LM"):
    """A peft.LoraConfig from the run config's lora_* fields, targets detected from `model` when not given."""
    from peft import LoraConfig

    targets = cfg.lora_target_modules or linear_module_names(model)
    if not targets:
        raise ValueError(f"{type(model).__name__} has no Linear layers to adapt; set lora_target_modules")
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        task_type=task_type,
        bias="none",
    )
