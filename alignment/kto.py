"""KTO: TRL's KTOTrainer over LoRA on binary feedback (thumbs up/down), one answer per row:

    {"prompt": [{"role": "user", "content": "Hi?"}], "completion": [{"role": "assistant", "content": "Hello!"}],
     "label": true}

    python -m alignment kto RUN_DIR        # RUN_DIR/config.yaml says base, data and the hyperparameters

The reference is the same model with the adapter disabled (no second copy in memory); with a parent adapter
(e.g. the SFT adapter) TRL keeps a frozen copy of it as the reference adapter, as DPO does. The `kto` loss
estimates its KL term from mismatched prompt/completion pairs within a batch, so a batch holds two rows or more.
`desirable_weight` / `undesirable_weight` balance labels of unequal counts.
"""

from __future__ import annotations

from alignment.common import train_policy_adapter


def train(cfg, run_dir, *, resume_from=None, stop=None) -> dict:
    from trl import KTOTrainer

    return train_policy_adapter(KTOTrainer, "kto", cfg, run_dir, resume_from=resume_from, stop=stop)
