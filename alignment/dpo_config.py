"""The config of the `dpo` stage: TRL's DPOConfig plus PrefLab's fields (alignment/preflab_fields.py).

cfg = DPORunConfig(base="models/tiny", data="pairs.jsonl", output_dir="runs/dpo-1", beta=0.1, loss_type="ipo")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from trl import DPOConfig

from alignment.preflab_fields import PrefLabFields


@dataclass(kw_only=True)
class DPORunConfig(DPOConfig, PrefLabFields):
    """DPO over LoRA; the reference is the same model with the adapter disabled (no second copy in memory)."""

    stage: ClassVar[str] = "dpo"
    page_values: ClassVar[dict[str, Any]] = {
        **PrefLabFields.page_values,
        "learning_rate": 5e-5,
        "beta": 0.1,
        "loss_type": "sigmoid",
        "max_length": 1024,
    }
    # the losses of TRL's list that train on one chosen/rejected pair each
    page_choices: ClassVar[dict[str, tuple]] = {"loss_type": ("sigmoid", "ipo", "hinge", "robust", "sppo_hard")}

    def __post_init__(self):
        self._preflab_post_init()
        super().__post_init__()
