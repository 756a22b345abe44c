"""The loop's settings: LoopConfig (one field per knob, validated on creation), the tuned presets, and LoopState.

cfg = LoopConfig(base_model="models/tiny", **PRESETS["demo"])     # explicit fields override a preset's
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from db.errors import PrefLabError
from serving.loop.prompts import MAX_PROMPTS

METHODS = ("dpo", "ppo", "rloo", "grpo")  # dpo learns from the pairs; the others from a reward model trained on them

# Chosen with the real pipeline on the (pre-trained) tiny model for a round of a few minutes; docs/loop.md and
# docs/benchmarks.md say what they reach there (bench/loop.py measures it).
PRESETS: dict[str, dict] = {
    "demo": {
        "train_prompts": 160,
        "heldout_prompts": 64,
        "n": 4,
        "max_tokens": 24,
        "temperature": 1.0,
        "annotators": 3,
        "noise": 0.1,
        "learning_rate": 2e-3,
        "epochs": 2.0,
        "beta": 0.1,
        "lora_r": 16,
        "batch_size": 16,
        "arena_turns": 2,
        # ppo / rloo / grpo: a reward model that beats chance on held-out pairs (0.55-0.74 measured; 1e-3 and 2
        # epochs stayed at 0.50), and a KL penalty that keeps the policy near its parent (docs/benchmarks.md)
        "rm_learning_rate": 3e-3,
        "rm_epochs": 4.0,
        "ppo_max_steps": 120,
        "kl_coef": 0.2,
    },
    # CI-sized: seconds of training, just enough to check the plumbing and the report's arithmetic
    "test": {
        "train_prompts": 6,
        "heldout_prompts": 4,
        "n": 3,
        "max_tokens": 8,
        "temperature": 1.0,
        "annotators": 2,
        "noise": 0.2,
        "learning_rate": 1e-3,
        "epochs": 1.0,
        "max_steps": 2,
        "beta": 0.1,
        "lora_r": 4,
        "batch_size": 4,
        "arena_turns": 1,
        "rm_max_steps": 2,
        "ppo_max_steps": 2,
    },
}


@dataclass(kw_only=True)
class LoopConfig:
    base_model: str  # model folder (e.g. models/tiny)
    name: str | None = None  # datasets <name>-r<round>, <name>-heldout; adapters <name>-r<round>-<method>
    # (default: loop-<UTC time>, so a second loop never finds the first one's prompts already ranked)
    method: str = "dpo"  # dpo | ppo | rloo | grpo (the last three: a reward model, then that online method with it)
    rounds: int = 1
    parent_adapter: str | None = None  # adapter folder of the current policy (None: the base model)
    train_prompts: int = 128  # per round; each round gets fresh prompts
    heldout_prompts: int = 64  # disjoint from every round's training prompts
    n: int = 4  # answers per prompt
    max_tokens: int = 24  # short answers: the tiny model learns the length rule from them quickly
    temperature: float = 1.0  # the policy's own distribution: DPO's pairs should be on-policy
    top_p: float = 1.0
    annotators: int = 3
    noise: float = 0.1
    learning_rate: float = 2e-3  # high for LoRA, on purpose: a tiny model and about a hundred steps
    epochs: float = 2.0
    max_steps: int = -1
    beta: float = 0.1
    lora_r: int = 16
    batch_size: int = 16
    # methods ppo, rloo and grpo: the reward model's and the policy's own budgets (ppo_*: the policy's, any method)
    rm_learning_rate: float = 1e-3
    rm_epochs: float = 2.0
    rm_max_steps: int = -1
    ppo_learning_rate: float = 1e-3
    ppo_max_steps: int = 60
    kl_coef: float | None = None  # the policy's KL penalty to its parent (ppo's kl_coef, rloo's/grpo's beta); None:
    # the stage's default
    arena_turns: int = 1  # answers per model per held-out prompt (votes = held-out prompts x turns)
    backend: str = "transformers"  # engine for sampling and the arena: transformers | vllm
    threads: int = 1  # torch threads of the training job: more than one thrashes a small, shared CPU
    seed: int = 0
    out_dir: str | None = None  # report folder (default: PREFLAB_HOME/loops/<name>-<timestamp>)

    def __post_init__(self):
        if self.method not in METHODS:
            raise PrefLabError(f"--method {self.method}: use one of {', '.join(METHODS)}")
        if self.backend not in ("transformers", "vllm"):
            raise PrefLabError(f"--engine {self.backend}: use transformers or vllm")
        if self.n < 2:
            raise PrefLabError(f"--n {self.n}: a ranking needs at least 2 answers per prompt")
        if self.rounds < 1 or self.train_prompts < 1 or self.heldout_prompts < 1 or self.arena_turns < 1:
            raise PrefLabError("--rounds, --train-prompts, --heldout-prompts and --arena-turns must be >= 1")
        total = self.rounds * self.train_prompts + self.heldout_prompts
        if total > MAX_PROMPTS:
            raise PrefLabError(f"{total} prompts requested; at most {MAX_PROMPTS}")
        if not (Path(self.base_model) / "config.json").exists():
            raise PrefLabError(
                f"--base {self.base_model}: not a model folder (no config.json); build one with "
                "`preflab tiny-model models/tiny`"
            )
        if self.parent_adapter and not (Path(self.parent_adapter) / "adapter_config.json").exists():
            raise PrefLabError(f"--parent {self.parent_adapter}: not a LoRA adapter folder (no adapter_config.json)")


@dataclass
class LoopState:
    """What a running loop reports to a progress callback (and the server's GET /api/loop)."""

    step: str = "starting"
    round: int = 0
    detail: str = ""
    report: str | None = None
    error: str | None = None
    history: list[dict] = field(default_factory=list)
