"""The config of the `rloo` stage: TRL's RLOOConfig plus PrefLab's fields (alignment/preflab_fields.py).

cfg = RLOORunConfig(base="models/tiny", data="prompts.jsonl", reward_model="runs/rm-1/adapter", output_dir="r")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from trl import RLOOConfig

from alignment.preflab_fields import PrefLabFields


@dataclass(kw_only=True)
class RLOORunConfig(RLOOConfig, PrefLabFields):
    """RLOO over LoRA, scored by the trained reward model (`reward_model`)."""

    stage: ClassVar[str] = "rloo"
    needs_reward_model: ClassVar[bool] = True
    page_values: ClassVar[dict[str, Any]] = {
        **PrefLabFields.page_values,
        "learning_rate": 1e-5,
        "beta": 0.05,
        "num_generations": 4,
        "max_completion_length": 64,
    }

    def __post_init__(self):
        self._preflab_post_init()
        super().__post_init__()
