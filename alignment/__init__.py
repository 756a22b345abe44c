"""Training with TRL + PEFT over LoRA: SFT, reward model, PPO/RLOO/GRPO, DPO, KTO. Reads frozen snapshots only.

This module stays free of heavy imports: the CLI reads STAGES from it while `preflab --help` starts.
"""

# the training stages, in the order a pipeline runs (kto, like dpo, follows sft: it learns from thumbs up/down)
STAGES = ("sft", "reward", "ppo", "rloo", "grpo", "dpo", "kto")
