"""DPO: TRL's DPOTrainer over LoRA. The reference is the same model with the adapter disabled (ref_model=None),
so there is no second copy in memory. `beta` and `loss_type` (sigmoid, ipo, hinge, ...) come from the config.

With a parent adapter (e.g. the SFT adapter) the adapter keeps training and TRL keeps a frozen copy of it
as the reference adapter ("ref"): the reference is then the SFT policy, as DPO wants.
"""

from __future__ import annotations

from alignment.common import run_trainer
from alignment.data import load_dataset_for
from alignment.lora import lora_config_for
from alignment.models import dtype_for, load_tokenizer, load_with_adapter


def train(cfg, run_dir, *, resume_from=None, stop=None) -> dict:
    from trl import DPOTrainer

    tok = load_tokenizer(cfg.base)
    model, chain = load_with_adapter(cfg.base, cfg.adapter, mode="continue", dtype=dtype_for(cfg))
    peft_config = None if cfg.adapter else lora_config_for(model, cfg)
    train_ds, eval_ds = load_dataset_for(
        "dpo", cfg.data, max_samples=cfg.max_samples, eval_fraction=cfg.eval_fraction, seed=cfg.seed
    )
    return run_trainer(
        DPOTrainer,
        cfg,
        run_dir,
        model=model,
        tokenizer=tok,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        peft_config=peft_config,
        merged_parents=chain,
        resume_from=resume_from,
        stop=stop,
        ref_model=None,
    )
