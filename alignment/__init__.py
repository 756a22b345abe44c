"""Training with TRL + PEFT over LoRA: SFT, reward model, PPO/RLOO/GRPO, DPO. Reads frozen snapshots only."""
