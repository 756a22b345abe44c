"""GRPO: TRL's GRPOTrainer over LoRA with the trained reward model as the reward (same wiring as RLOO)."""

from __future__ import annotations

from alignment.rloo import train_online


def train(cfg, run_dir, *, resume_from=None, stop=None) -> dict:
    return train_online("GRPOTrainer", cfg, run_dir, resume_from=resume_from, stop=stop)
