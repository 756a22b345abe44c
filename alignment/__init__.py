"""Training with TRL + PEFT over LoRA: SFT, reward model, PPO/RLOO/GRPO, DPO. Reads frozen snapshots only.

This module stays free of heavy imports: the CLI reads STAGES from it while `preflab --help` starts.
"""

STAGES = ("sft", "reward", "ppo", "rloo", "grpo", "dpo")  # the training stages, in the order a pipeline runs
