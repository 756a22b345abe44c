"""The fields PrefLab adds to every stage's TRL config, and the checks they get before TRL's own.

Each stage's config class (alignment/*_config.py) is TRL's config for that method plus these fields:

    @dataclass(kw_only=True)
    class DPORunConfig(DPOConfig, PrefLabFields):
        stage: ClassVar[str] = "dpo"
        def __post_init__(self):
            self._preflab_post_init()   # our checks first: they name the key and the fix
            super().__post_init__()     # then TRL's and transformers'

Every field carries `metadata={"help": ..., "group": ...}`: `preflab train STAGE --help-config` and the admin
page (GET /api/train/stages) are generated from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from alignment.errors import ConfigError

MODEL, DATA, LORA = "Model", "Data", "LoRA"  # the groups of PrefLab's fields, in the order --help-config shows them
# How the job is launched sits with the training loop's own fields (alignment.config.TRAINING_GROUP, same text).
TRAINING = "Training loop (transformers TrainingArguments)"
MAX_PROCESSES = 64


@dataclass(kw_only=True)
class PrefLabFields:
    """The fields PrefLab adds to every stage's TRL config."""

    # ---- model
    base: str = field(
        default="",
        metadata={
            "help": "Base model: a folder written by save_pretrained (or a hub id when online). Required: "
            "`base: PATH` in the file or --base.",
            "group": MODEL,
        },
    )
    adapter: str | None = field(
        default=None,
        metadata={
            "help": "Parent LoRA adapter folder, e.g. the SFT adapter under a DPO run. sft, dpo, rloo and grpo keep "
            "training it; reward and ppo merge it into the weights and train a new LoRA on top.",
            "group": MODEL,
        },
    )
    reward_model: str | None = field(
        default=None,
        metadata={
            "help": "ppo, rloo, grpo (required there): a reward run's adapter folder or a full reward model folder.",
            "group": MODEL,
        },
    )

    # ---- data
    data: str = field(
        default="",
        metadata={
            "help": "Snapshot file: JSONL or Parquet as `preflab export` writes it. Required: `data: FILE`, "
            "--data or --dataset.",
            "group": DATA,
        },
    )
    snapshot_id: str | None = field(
        default=None,
        metadata={
            "help": "Content hash of the snapshot (lineage). Unset: read from FILE.snapshot.json, else the file's "
            "sha256.",
            "group": DATA,
        },
    )
    snapshot_origin: dict | None = field(
        default=None,
        metadata={"help": "How the snapshot was made: dataset, filters, format (set by --dataset).", "group": DATA},
    )
    eval_fraction: float = field(
        default=0.0,
        metadata={
            "help": "Held-out share of the data, in [0, 1). reward: pairwise accuracy on it is logged as "
            "eval_accuracy.",
            "group": DATA,
        },
    )
    max_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N rows (quick trials); null: all.", "group": DATA}
    )

    # ---- LoRA: W' = W + (alpha / r) * B A
    lora_r: int = field(
        default=16,
        metadata={"help": "LoRA rank: 8-64 is usual; small ranks are enough for preference tuning.", "group": LORA},
    )
    lora_alpha: int = field(
        default=32, metadata={"help": "LoRA scale is alpha / r; 2 * r is the common choice.", "group": LORA}
    )
    lora_dropout: float = field(
        default=0.05,
        metadata={"help": "Dropout on the LoRA input, in [0, 1); 0.05-0.1 for finetuning.", "group": LORA},
    )
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Module names to adapt (e.g. [q_proj, v_proj]). null: every Linear of the transformer blocks, "
            "found from the model (alignment/lora.py).",
            "group": LORA,
        },
    )

    # ---- launch: one process, or `accelerate launch` with several (alignment.launch.job_command)
    processes: int = field(
        default=1,
        metadata={
            "help": f"Training processes on this machine, 1-{MAX_PROCESSES}. More than 1 runs the job under "
            "`accelerate launch` (DDP: NCCL on GPUs, one process per GPU; gloo on CPU). The global batch is "
            "per_device_train_batch_size x gradient_accumulation_steps x processes.",
            "group": TRAINING,
        },
    )
    accelerate_config: str | None = field(
        default=None,
        metadata={
            "help": "An accelerate config file (alignment/configs/: ddp.yaml, zero2.yaml, fsdp.yaml, or your own, "
            "e.g. several machines): the job runs under `accelerate launch --config_file FILE`. `processes` above "
            "1 overrides the file's num_processes.",
            "group": TRAINING,
        },
    )

    stage: ClassVar[str] = ""
    needs_reward_model: ClassVar[bool] = False  # ppo, rloo, grpo score their rollouts with `reward_model`
    # What the admin page offers first, with starting values that suit LoRA on a small model. The CLI and YAML
    # files keep the config's own defaults (TRL's); the page sends these values explicitly.
    page_values: ClassVar[dict[str, Any]] = {
        "learning_rate": 1e-4,
        "num_train_epochs": 1.0,
        "max_steps": -1,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "lora_r": 16,
        "lora_alpha": 32,
        "lora_dropout": 0.05,
        "save_steps": 100,
        "logging_steps": 5,
        "processes": 1,
    }
    page_choices: ClassVar[dict[str, tuple]] = {}  # page fields picked from a list rather than typed

    def _check_preflab_fields(self) -> None:
        if not self.base:
            raise ConfigError("is required: set `base: PATH` (a model folder) or pass --base", key="base")
        if not self.data:
            raise ConfigError("is required: set `data: FILE` (a snapshot) or pass --data/--dataset", key="data")
        if self.needs_reward_model and not self.reward_model:
            raise ConfigError(
                f"is required for stage '{self.stage}': train one with `preflab train reward ...` and set "
                "`reward_model: RUN_DIR/adapter` (or --set reward_model=...)",
                key="reward_model",
            )
        if self.reward_model and not Path(self.reward_model).exists():
            raise ConfigError(
                f"'{self.reward_model}' does not exist: point it at a reward adapter or model folder",
                key="reward_model",
            )
        if self.adapter and not (Path(self.adapter) / "adapter_config.json").exists():
            raise ConfigError(f"'{self.adapter}' is not a LoRA adapter folder (no adapter_config.json)", key="adapter")
        if self.lora_r < 1:
            raise ConfigError(f"must be >= 1, got {self.lora_r}: try 16", key="lora_r")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"must be in [0, 1), got {self.lora_dropout}: try 0.05", key="lora_dropout")
        if not 1 <= self.processes <= MAX_PROCESSES:
            raise ConfigError(
                f"must be in 1..{MAX_PROCESSES}, got {self.processes}: one per GPU (or a few on CPU)", key="processes"
            )
        if self.stage == "ppo" and (self.processes > 1 or self.accelerate_config):
            raise ConfigError(
                "ppo trains in one process (its loop does not use accelerate): for several processes use rloo or "
                "grpo, or set processes: 1",
                key="processes",
            )
        if self.accelerate_config and not Path(self.accelerate_config).is_file():
            raise ConfigError(
                f"'{self.accelerate_config}' is not a file: give an accelerate config (alignment/configs/*.yaml)",
                key="accelerate_config",
            )
        if not 0 <= self.eval_fraction < 1:
            raise ConfigError(f"must be in [0, 1), got {self.eval_fraction}: try 0.1", key="eval_fraction")

    def _device_defaults(self) -> None:
        """CPU: use_cpu and fp32 (bf16 fails there); GPU: bf16 unless fp16 was asked for."""
        import torch

        if not torch.cuda.is_available():
            self.use_cpu = True
            self.bf16 = False
            self.fp16 = False
        elif getattr(self, "bf16", None) is None:
            self.bf16 = not getattr(self, "fp16", False)

    def _preflab_post_init(self) -> None:
        """Our checks and device defaults; each stage's __post_init__ calls this before TRL's own."""
        if isinstance(self.lora_target_modules, str) and self.lora_target_modules != "all-linear":
            self.lora_target_modules = [self.lora_target_modules]
        self._check_preflab_fields()
        self._device_defaults()
        if self.report_to in (None, "none", []):
            self.report_to = ["tensorboard"]
