"""SFT: TRL's SFTTrainer over LoRA on messages data (reference answers or best-ranked answers).

python -m alignment sft RUN_DIR        # RUN_DIR/config.yaml says base, data and the hyperparameters
"""

from __future__ import annotations

from alignment.common import run_trainer
from alignment.data import load_dataset_for
from alignment.lora import lora_config_for
from alignment.models import dtype_for, load_tokenizer, load_with_adapter


def train(cfg, run_dir, *, resume_from=None, stop=None) -> dict:
    from trl import SFTTrainer

    tok = load_tokenizer(cfg.base)
    # a parent adapter keeps training (the result stays one adapter on the base, servable as is)
    model, chain = load_with_adapter(cfg.base, cfg.adapter, mode="continue", dtype=dtype_for(cfg))
    peft_config = None if cfg.adapter else lora_config_for(model, cfg)
    train_ds, eval_ds = load_dataset_for(
        "sft", cfg.data, max_samples=cfg.max_samples, eval_fraction=cfg.eval_fraction, seed=cfg.seed
    )
    return run_trainer(
        SFTTrainer,
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
    )
