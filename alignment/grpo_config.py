"""The config of the `grpo` stage: TRL's GRPOConfig plus PrefLab's fields (alignment/preflab_fields.py).

cfg = GRPORunConfig(base="models/tiny", data="prompts.jsonl", reward_model="runs/rm-1/adapter", output_dir="g")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from trl import GRPOConfig

from alignment.preflab_fields import PrefLabFields


@dataclass(kw_only=True)
class GRPORunConfig(GRPOConfig, PrefLabFields):
    """GRPO over LoRA, scored by the trained reward model (`reward_model`); same wiring as RLOO."""

    stage: ClassVar[str] = "grpo"
    needs_reward_model: ClassVar[bool] = True
    page_values: ClassVar[dict[str, Any]] = {
        **PrefLabFields.page_values,
        "learning_rate": 1e-5,
        "beta": 0.0,  # no KL term, so no reference model in memory
        "num_generations": 4,
        "max_completion_length": 64,
    }

    def __post_init__(self):
        self._preflab_post_init()
        super().__post_init__()
