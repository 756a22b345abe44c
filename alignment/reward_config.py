"""The config of the `reward` stage: TRL's RewardConfig plus PrefLab's fields (alignment/preflab_fields.py).

cfg = RewardRunConfig(base="models/tiny", data="pairs.jsonl", output_dir="runs/rm-1", eval_fraction=0.1)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from trl import RewardConfig

from alignment.preflab_fields import PrefLabFields


@dataclass(kw_only=True)
class RewardRunConfig(RewardConfig, PrefLabFields):
    """A reward model on chosen/rejected pairs: a score head on the base (or base + SFT adapter), LoRA on blocks."""

    stage: ClassVar[str] = "reward"
    page_values: ClassVar[dict[str, Any]] = {
        **PrefLabFields.page_values,
        "learning_rate": 1e-4,
        "max_length": 1024,
        "eval_fraction": 0.1,  # the page reports held-out pairwise accuracy by default
    }

    def __post_init__(self):
        self._preflab_post_init()
        super().__post_init__()
