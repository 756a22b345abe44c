"""The config of the `kto` stage: TRL's KTOConfig plus PrefLab's fields (alignment/preflab_fields.py).

cfg = KTORunConfig(base="models/tiny", data="kto.jsonl", output_dir="runs/kto-1", beta=0.1, desirable_weight=1.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from trl import KTOConfig

from alignment.errors import ConfigError
from alignment.preflab_fields import PrefLabFields


@dataclass(kw_only=True)
class KTORunConfig(KTOConfig, PrefLabFields):
    """KTO over LoRA on thumbs up/down (prompt, completion, label); the reference is the adapter-disabled model."""

    stage: ClassVar[str] = "kto"
    page_values: ClassVar[dict[str, Any]] = {
        **PrefLabFields.page_values,
        "learning_rate": 5e-5,
        "beta": 0.1,
        "loss_type": "kto",
        # weigh the rarer label up: desirable_weight * n_up / (undesirable_weight * n_down) in [1, 4/3] (the paper)
        "desirable_weight": 1.0,
        "undesirable_weight": 1.0,
        "max_length": 1024,
    }
    page_choices: ClassVar[dict[str, tuple]] = {"loss_type": ("kto", "apo_zero_unpaired")}

    def _check_kto_fields(self) -> None:
        """The KL term of the `kto` loss pairs each prompt with another row's completion in the same batch: TRL
        refuses a batch of one, and any sampler but `sequential`, only once the model is loaded. Said here, first."""
        for key in ("desirable_weight", "undesirable_weight"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"must be > 0, got {getattr(self, key)}: try 1.0", key=key)
        if self.loss_type != "kto":
            return
        if self.per_device_train_batch_size <= 1:
            raise ConfigError(
                f"must be > 1 for loss_type kto, got {self.per_device_train_batch_size}: the KL term pairs each "
                "prompt with another completion of the same batch; try 4 (or loss_type=apo_zero_unpaired)",
                key="per_device_train_batch_size",
            )
        if self.train_sampling_strategy != "sequential":
            raise ConfigError(
                f"must be 'sequential' for loss_type kto, got '{self.train_sampling_strategy}': the KL completions "
                "are fixed per batch before training",
                key="train_sampling_strategy",
            )

    def __post_init__(self):
        self._preflab_post_init()
        self._check_kto_fields()
        super().__post_init__()
