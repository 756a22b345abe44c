"""One config dataclass per training stage, built on TRL's config classes, plus PrefLab's own fields.

    cfg = load_config("run.yaml", overrides=["learning_rate=1e-4"])   # validated; nothing is loaded yet
    save_config(cfg, run_dir / "config.yaml")                          # the resolved config (YAML)

A config file is flat YAML: `stage:` picks the class, every other key is a field of that class (ours
or TRL's/transformers'). Validation happens here, before any model or data is touched: an unknown key,
a value of the wrong type, a missing `base`/`data`, or a missing `reward_model` for ppo/rloo/grpo is one
ConfigError naming the key and the fix.

On a machine without CUDA the config switches to `use_cpu=True, bf16=False` by itself (TRL's configs
default to bf16, which fails on CPU); with CUDA, bf16 stays on.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import types
import typing
from pathlib import Path
from typing import Any, ClassVar

import yaml
from trl import DPOConfig, GRPOConfig, RewardConfig, RLOOConfig, SFTConfig
from trl.trainer.base_config import _BaseConfig

from alignment import STAGES
from alignment.errors import ConfigError

NEEDS_REWARD_MODEL = ("ppo", "rloo", "grpo")


@dataclasses.dataclass(kw_only=True)
class PrefLabFields:
    """The fields PrefLab adds to every stage's TRL config."""

    base: str = ""  # base model folder (or hub id when online)
    adapter: str | None = None  # parent LoRA adapter folder (e.g. the SFT adapter under a DPO run)
    data: str = ""  # snapshot file: JSONL or Parquet written by db.export
    snapshot_id: str | None = None  # content hash of the snapshot (lineage)
    snapshot_origin: dict | None = None  # how the snapshot was made: dataset, filters, format
    reward_model: str | None = None  # ppo/rloo/grpo: a reward run's adapter folder or a full reward model folder
    lora_r: int = 16  # LoRA rank: 8-64 is usual; small ranks are enough for preference tuning
    lora_alpha: int = 32  # scale = alpha / r; 2*r is the common choice
    lora_dropout: float = 0.05  # 0.05-0.1 for finetuning
    lora_target_modules: list[str] | None = None  # None: every Linear of the blocks (alignment.lora)
    eval_fraction: float = 0.0  # held-out share of the data (reward: pairwise accuracy on it)
    max_samples: int | None = None  # use only the first N rows (quick trials)
    run_name_prefix: str = "preflab"

    stage: ClassVar[str] = ""

    def _check_preflab_fields(self) -> None:
        if not self.base:
            raise ConfigError("is required: set `base: PATH` (a model folder) or pass --base", key="base")
        if not self.data:
            raise ConfigError("is required: set `data: FILE` (a snapshot) or pass --data/--dataset", key="data")
        if self.stage in NEEDS_REWARD_MODEL and not self.reward_model:
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
            raise ConfigError(f"must be >= 1, got {self.lora_r}", key="lora_r")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"must be in [0, 1), got {self.lora_dropout}", key="lora_dropout")
        if not 0 <= self.eval_fraction < 1:
            raise ConfigError(f"must be in [0, 1), got {self.eval_fraction}", key="eval_fraction")

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
        if isinstance(self.lora_target_modules, str) and self.lora_target_modules != "all-linear":
            self.lora_target_modules = [self.lora_target_modules]
        self._check_preflab_fields()
        self._device_defaults()
        if self.report_to in (None, "none", []):
            self.report_to = ["tensorboard"]


def _stage_class(name: str, stage: str, trl_cls: type, doc: str) -> type:
    """A dataclass that is `trl_cls` plus PrefLabFields, validated before TRL's own __post_init__."""

    def __post_init__(self):
        self._preflab_post_init()
        trl_cls.__post_init__(self)

    ns = {"__post_init__": __post_init__, "__doc__": doc, "stage": stage, "__module__": __name__}
    cls = types.new_class(name, (trl_cls, PrefLabFields), exec_body=lambda d: d.update(ns))
    cls.__annotations__ = {}
    cls.__qualname__ = cls.__name__
    return dataclasses.dataclass(kw_only=True)(cls)


SFTRunConfig = _stage_class("SFTRunConfig", "sft", SFTConfig, "SFT on messages data (TRL SFTConfig + PrefLab fields).")
RewardRunConfig = _stage_class(
    "RewardRunConfig", "reward", RewardConfig, "Reward model on chosen/rejected pairs (TRL RewardConfig)."
)
DPORunConfig = _stage_class(
    "DPORunConfig", "dpo", DPOConfig, "DPO over LoRA; reference = adapter disabled (TRL DPOConfig)."
)
RLOORunConfig = _stage_class(
    "RLOORunConfig", "rloo", RLOOConfig, "RLOO with the trained reward model (TRL RLOOConfig)."
)
GRPORunConfig = _stage_class(
    "GRPORunConfig", "grpo", GRPOConfig, "GRPO with the trained reward model (TRL GRPOConfig)."
)


@dataclasses.dataclass(kw_only=True)
class PPOConfig(_BaseConfig, PrefLabFields):
    """Our PPO (TRL 1.16 has none): transformers' TrainingArguments (lr, steps, saving, logging) + PPO knobs."""

    stage: ClassVar[str] = "ppo"
    learning_rate: float = 1e-5
    per_device_train_batch_size: int = 8  # prompts per rollout
    gradient_checkpointing: bool = False  # rollouts are short; recompute costs more than it saves here
    max_prompt_length: int = 256
    max_completion_length: int = 64
    temperature: float = 1.0  # sampling temperature of rollouts (1.0: the policy's own distribution)
    top_k: int = 0  # 0: no top-k filtering, so log-probs match the sampling distribution
    ppo_epochs: int = 2  # optimisation passes over each rollout batch
    num_mini_batches: int = 1
    cliprange: float = 0.2  # clipped surrogate objective
    cliprange_value: float = 0.2
    vf_coef: float = 0.1  # weight of the value loss
    kl_coef: float = 0.05  # per-token KL penalty to the reference (adapter disabled)
    gamma: float = 1.0
    lam: float = 0.95  # GAE lambda
    whiten_rewards: bool = True  # normalise rewards per batch before GAE
    missing_eos_penalty: float | None = None  # subtract from the score of completions that never end

    def __post_init__(self):
        self._preflab_post_init()
        super().__post_init__()
        for key in ("ppo_epochs", "num_mini_batches", "max_completion_length"):
            if getattr(self, key) < 1:
                raise ConfigError(f"must be >= 1, got {getattr(self, key)}", key=key)
        if self.per_device_train_batch_size % self.num_mini_batches:
            raise ConfigError(
                "per_device_train_batch_size must be a multiple of num_mini_batches", key="num_mini_batches"
            )


CONFIG_CLASSES: dict[str, type] = {
    "sft": SFTRunConfig,
    "reward": RewardRunConfig,
    "ppo": PPOConfig,
    "rloo": RLOORunConfig,
    "grpo": GRPORunConfig,
    "dpo": DPORunConfig,
}


# ---- validation ------------------------------------------------------------------------------------


def _init_fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def _type_ok(value: Any, tp: Any) -> bool:
    """Does `value` (from YAML) fit annotation `tp`? Lenient where the annotation is exotic."""
    if tp is Any or tp is None:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if origin in (list, tuple, set):
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):  # a single value where a list is expected: TRL wraps it
            return bool(args) and not isinstance(value, (dict, list)) and _type_ok(value, args[0])
        return not args or all(_type_ok(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if isinstance(tp, type):
        if issubclass(tp, enum.Enum):
            return value in {m.value for m in tp} or isinstance(value, tp)
        if tp is bool:
            return isinstance(value, bool)
        if tp is float:
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        if tp is int:
            return isinstance(value, int) and not isinstance(value, bool)
        return isinstance(value, tp)
    return True  # forward refs and library-specific types: TRL checks them itself


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) if isinstance(tp, type) else str(tp).replace("typing.", "")


def _coerce_number(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def validate_dict(stage: str, values: dict, *, source: str | None = None) -> type:
    """Check keys and types of `values` for `stage`; return the config class. Raises ConfigError."""
    if stage not in CONFIG_CLASSES:
        raise ConfigError(f"unknown stage '{stage}': choose one of {', '.join(STAGES)}", key="stage", source=source)
    cls = CONFIG_CLASSES[stage]
    known = _init_fields(cls)
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else "; see `preflab train --help-config " + stage + "`"
            raise ConfigError(f"unknown key for stage '{stage}'{hint}", key=key, source=source)
        tp = hints.get(key)
        if isinstance(value, str) and not _type_ok(value, tp):
            value = values[key] = _coerce_number(value)  # PyYAML reads `1e-4` as a string
        if not _type_ok(value, tp):
            raise ConfigError(
                f"expected {_type_name(tp)}, got {type(value).__name__} {value!r}", key=key, source=source
            )
    return cls


def parse_overrides(pairs: list[str] | tuple[str, ...]) -> dict:
    """['lr=1e-4', 'lora_target_modules=[q_proj,v_proj]'] -> dict; values parsed as YAML scalars/lists."""
    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got '{pair}'")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def build_config(stage: str, values: dict, *, source: str | None = None):
    """Validate then construct the stage's config. Every failure is a ConfigError (nothing loaded yet)."""
    values = dict(values)
    values.pop("stage", None)
    cls = validate_dict(stage, values, source=source)
    values.setdefault("output_dir", values.get("output_dir") or "run")
    try:
        return cls(**values)
    except ConfigError as e:
        if source and not e.source:
            raise ConfigError(e.reason if hasattr(e, "reason") else str(e), key=e.key, source=source) from None
        raise
    except (ValueError, TypeError) as e:  # TRL/transformers' own checks (e.g. conflicting options)
        raise ConfigError(str(e).splitlines()[0], source=source) from None


def load_config(
    path: str | Path | None = None,
    *,
    stage: str | None = None,
    values: dict | None = None,
    overrides: list[str] | tuple[str, ...] = (),
):
    """Read a YAML file (optional), merge `values` then `--set` overrides, validate and build."""
    merged: dict = {}
    source = str(path) if path else None
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as e:
            raise ConfigError(f"cannot read config: {e.strerror}", source=source) from None
        except yaml.YAMLError as e:
            raise ConfigError(f"not valid YAML: {e}", source=source) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError("a config file must be a mapping of key: value", source=source)
        merged.update(loaded)
    merged.update(values or {})
    merged.update(parse_overrides(overrides))
    file_stage = merged.pop("stage", None)
    if stage and file_stage and stage != file_stage:
        raise ConfigError(
            f"the file says stage '{file_stage}' but '{stage}' was asked for", key="stage", source=source
        )
    stage = stage or file_stage
    if not stage:
        raise ConfigError(
            "is required: put `stage: sft|reward|ppo|rloo|grpo|dpo` in the file", key="stage", source=source
        )
    return build_config(stage, merged, source=source)


# ---- YAML out --------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


# Set by TrainingArguments.__post_init__ from other fields (or secrets): writing them back would conflict.
_DERIVED = (
    "hub_token",
    "accelerator_config",
    "debug",
    "dataloader_pin_memory",
    "disable_tqdm",
    "pad_to_multiple_of",
    "gradient_checkpointing",
    "gradient_checkpointing_kwargs",
    "generation_batch_size",
)


def config_to_dict(cfg) -> dict:
    """The resolved config: stage, PrefLab's fields, and every TRL field whose value differs from its default."""
    out: dict = {"stage": cfg.stage}
    ours = {f.name for f in dataclasses.fields(PrefLabFields)}
    for name, f in _init_fields(type(cfg)).items():
        value = getattr(cfg, name)
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        if name in ours or _plain(value) != _plain(default):
            out[name] = _plain(value)
    for derived in _DERIVED:
        out.pop(derived, None)
    return out


def save_config(cfg, path: str | Path) -> Path:
    """Write the resolved config as YAML (loadable again with load_config)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def default_values(stage: str) -> dict:
    """Main hyperparameters and their defaults for a stage (what the admin page shows first)."""
    common = {
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
    }
    per_stage = {
        "sft": {"learning_rate": 2e-4, "max_length": 1024},
        "reward": {"learning_rate": 1e-4, "max_length": 1024, "eval_fraction": 0.1},
        "dpo": {"learning_rate": 5e-5, "beta": 0.1, "loss_type": "sigmoid", "max_length": 1024},
        "ppo": {"learning_rate": 1e-5, "kl_coef": 0.05, "cliprange": 0.2, "max_completion_length": 64},
        "rloo": {"learning_rate": 1e-5, "beta": 0.05, "num_generations": 4, "max_completion_length": 64},
        "grpo": {"learning_rate": 1e-5, "beta": 0.0, "num_generations": 4, "max_completion_length": 64},
    }
    return {**common, **per_stage[stage]}
