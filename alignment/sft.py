"""SFT: TRL's SFTTrainer over LoRA on messages data (reference answers or best-ranked answers).

python -m alignment sft RUN_DIR        # RUN_DIR/config.yaml says base, data and the hyperparameters
"""

from __future__ import annotations

from alignment.common import train_policy_adapter


def train(cfg, run_dir, *, resume_from=None, stop=None) -> dict:
    from trl import SFTTrainer

    return train_policy_adapter(SFTTrainer, "sft", cfg, run_dir, resume_from=resume_from, stop=stop)
