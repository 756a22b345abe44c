"""The config of the `sft` stage: TRL's SFTConfig plus PrefLab's fields (alignment/preflab_fields.py).

cfg = SFTRunConfig(base="models/tiny", data="sft.jsonl", output_dir="runs/sft-1", max_length=512)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from trl import SFTConfig

from alignment.preflab_fields import PrefLabFields


@dataclass(kw_only=True)
class SFTRunConfig(SFTConfig, PrefLabFields):
    """SFT over LoRA on messages data (reference answers or best-ranked answers)."""

    stage: ClassVar[str] = "sft"
    page_values: ClassVar[dict[str, Any]] = {**PrefLabFields.page_values, "learning_rate": 2e-4, "max_length": 1024}

    def __post_init__(self):
        self._preflab_post_init()
        super().__post_init__()
