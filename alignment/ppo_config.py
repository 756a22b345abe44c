"""The config of the `ppo` stage: transformers' TrainingArguments (learning rate, steps, saving, logging), the
PPO knobs of our trainer (alignment/ppo.py; TRL 1.16 has no PPOTrainer) and PrefLab's fields.

    cfg = PPORunConfig(base="models/tiny", data="prompts.jsonl", reward_model="runs/rm-1/adapter", output_dir="p")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from transformers import TrainingArguments

from alignment.errors import ConfigError
from alignment.preflab_fields import PrefLabFields

PPO = "PPO"


@dataclass(kw_only=True)
class PPORunConfig(TrainingArguments, PrefLabFields):
    """Our PPO against a reward model: rollouts, reference log-probs with the adapter off, GAE, clipped updates."""

    stage: ClassVar[str] = "ppo"
    needs_reward_model: ClassVar[bool] = True
    page_values: ClassVar[dict[str, Any]] = {
        **PrefLabFields.page_values,
        "learning_rate": 1e-5,
        "kl_coef": 0.05,
        "cliprange": 0.2,
        "max_completion_length": 64,
    }

    # ---- TrainingArguments fields with defaults of our own (the same ones TRL's configs use, where it has them)
    learning_rate: float = field(default=1e-5, metadata={"help": "The initial learning rate for AdamW.", "group": PPO})
    per_device_train_batch_size: int = field(
        default=8, metadata={"help": "Prompts per rollout (one PPO step).", "group": PPO}
    )
    gradient_checkpointing: bool = field(
        default=False,
        metadata={"help": "Recompute activations in the backward pass; rollouts are short, so off."},
    )
    logging_steps: float = field(
        default=10, metadata={"help": "Log every N steps (to metrics.jsonl and TensorBoard)."}
    )
    bf16: bool | None = field(
        default=None,
        metadata={"help": "bf16 mixed precision. null: on with CUDA unless fp16 is set; off on CPU."},
    )

    # ---- rollouts
    max_prompt_length: int = field(
        default=256, metadata={"help": "Prompt tokens kept (the start is cut off beyond this).", "group": PPO}
    )
    max_completion_length: int = field(default=64, metadata={"help": "Tokens sampled per answer.", "group": PPO})
    temperature: float = field(
        default=1.0,
        metadata={"help": "Sampling temperature of rollouts (1.0: the policy's own distribution).", "group": PPO},
    )
    top_k: int = field(
        default=0,
        metadata={"help": "0: no top-k filtering, so log-probs match the sampling distribution.", "group": PPO},
    )
    missing_eos_penalty: float | None = field(
        default=None,
        metadata={"help": "Subtracted from the score of answers that never end (null: none).", "group": PPO},
    )
    center_scores: bool = field(
        default=True,
        metadata={
            "help": "Subtract the rollout's mean score before it is credited to each answer's last token. A reward "
            "model's scores have an arbitrary offset, and with a value head that starts at zero the offset becomes "
            "credit (or blame) for the end-of-answer token: answers get shorter (or longer) for no reason. A rollout "
            "whose answers all score the same is left as it is.",
            "group": PPO,
        },
    )

    # ---- optimisation
    ppo_epochs: int = field(default=2, metadata={"help": "Optimisation passes over each rollout batch.", "group": PPO})
    num_mini_batches: int = field(
        default=1,
        metadata={"help": "Mini-batches per pass; must divide per_device_train_batch_size.", "group": PPO},
    )
    cliprange: float = field(
        default=0.2, metadata={"help": "Clip range of the policy ratio (clipped surrogate objective).", "group": PPO}
    )
    cliprange_value: float = field(
        default=0.2, metadata={"help": "Clip range of the value prediction (clipped value loss).", "group": PPO}
    )
    vf_coef: float = field(default=0.1, metadata={"help": "Weight of the value loss.", "group": PPO})

    # ---- rewards and advantages
    kl_coef: float = field(
        default=0.05,
        metadata={"help": "Per-token KL penalty to the reference (the adapter disabled).", "group": PPO},
    )
    gamma: float = field(default=1.0, metadata={"help": "Discount factor of GAE.", "group": PPO})
    lam: float = field(default=0.95, metadata={"help": "Lambda of GAE (bias/variance trade-off).", "group": PPO})
    whiten_rewards: bool = field(
        default=True, metadata={"help": "Normalise rewards per batch before GAE.", "group": PPO}
    )

    def __post_init__(self):
        self._preflab_post_init()
        super().__post_init__()
        for key in ("ppo_epochs", "num_mini_batches", "max_completion_length"):
            if getattr(self, key) < 1:
                raise ConfigError(f"must be >= 1, got {getattr(self, key)}", key=key)
        if self.per_device_train_batch_size % self.num_mini_batches:
            raise ConfigError(
                f"per_device_train_batch_size ({self.per_device_train_batch_size}) must be a multiple of "
                "num_mini_batches: set num_mini_batches to one of its divisors",
                key="num_mini_batches",
            )
