"""DPO: TRL's DPOTrainer over LoRA. The reference is the same model with the adapter disabled (ref_model=None),
so there is no second copy in memory. `beta` and `loss_type` (sigmoid, ipo, hinge, ...) come from the config.

With a parent adapter (e.g. the SFT adapter) the adapter keeps training and TRL keeps a frozen copy of it
as the reference adapter ("ref"): the reference is then the SFT policy, as DPO wants.
"""

from __future__ import annotations

from alignment.common import train_policy_adapter


def train(cfg, run_dir, *, resume_from=None, stop=None) -> dict:
    from trl import DPOTrainer

    return train_policy_adapter(DPOTrainer, "dpo", cfg, run_dir, resume_from=resume_from, stop=stop, ref_model=None)
