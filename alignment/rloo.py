"""RLOO: TRL's RLOOTrainer over LoRA with the trained reward model (sequence classification) as the reward."""

from __future__ import annotations

from alignment.common import run_trainer
from alignment.data import load_dataset_for
from alignment.lora import lora_config_for
from alignment.models import dtype_for, load_reward_model, load_tokenizer, load_with_adapter


def train_online(trainer_name: str, cfg, run_dir, *, resume_from=None, stop=None) -> dict:
    import trl

    tok = load_tokenizer(cfg.base)
    tok.padding_side = "left"  # generation pads on the left
    model, chain = load_with_adapter(cfg.base, cfg.adapter, mode="continue", dtype=dtype_for(cfg))
    peft_config = None if cfg.adapter else lora_config_for(model, cfg)
    reward_model = load_reward_model(cfg.reward_model, dtype=dtype_for(cfg), pad_token_id=tok.pad_token_id)
    reward_tok = load_tokenizer(cfg.base)
    train_ds, _ = load_dataset_for(cfg.stage, cfg.data, max_samples=cfg.max_samples, seed=cfg.seed)
    return run_trainer(
        getattr(trl, trainer_name),
        cfg,
        run_dir,
        model=model,
        tokenizer=tok,
        train_dataset=train_ds,
        peft_config=peft_config,
        merged_parents=chain,
        resume_from=resume_from,
        stop=stop,
        reward_funcs=reward_model,
        reward_processing_classes=reward_tok,
    )


def train(cfg, run_dir, *, resume_from=None, stop=None) -> dict:
    return train_online("RLOOTrainer", cfg, run_dir, resume_from=resume_from, stop=stop)
