"""Stage configs: load, validate, save, describe. One dataclass per stage lives in its own module, built on TRL's
config class for that method plus PrefLab's fields (alignment/preflab_fields.py):

    sft: SFTRunConfig (alignment/sft_config.py)       reward: RewardRunConfig (alignment/reward_config.py)
    ppo: PPORunConfig (alignment/ppo_config.py)       rloo: RLOORunConfig (alignment/rloo_config.py)
    grpo: GRPORunConfig (alignment/grpo_config.py)    dpo: DPORunConfig (alignment/dpo_config.py)
    kto: KTORunConfig (alignment/kto_config.py)

    cfg = load_config("run.yaml", overrides=["learning_rate=1e-4"])   # validated; nothing is loaded yet
    save_config(cfg, run_dir / "config.yaml")                          # the resolved config (YAML)
    describe_fields("dpo")                                             # what `preflab train dpo --help-config` shows

A config file is flat YAML: `stage:` picks the class, every other key is a field of that class (ours
or TRL's/transformers'). Validation happens here, before any model or data is touched: an unknown key,
a value of the wrong type, a missing `base`/`data`, or a missing `reward_model` for ppo/rloo/grpo is one
ConfigError naming the file, the key and the fix.

On a machine without CUDA the config switches to `use_cpu=True, bf16=False` by itself (TRL's configs
default to bf16, which fails on CPU); with CUDA, bf16 stays on.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from transformers import TrainingArguments

from alignment import STAGES
from alignment.dpo_config import DPORunConfig
from alignment.errors import ConfigError
from alignment.grpo_config import GRPORunConfig
from alignment.kto_config import KTORunConfig
from alignment.ppo_config import PPORunConfig
from alignment.preflab_fields import PrefLabFields
from alignment.reward_config import RewardRunConfig
from alignment.rloo_config import RLOORunConfig
from alignment.sft_config import SFTRunConfig

CONFIG_CLASSES: dict[str, type] = {
    cls.stage: cls
    for cls in (SFTRunConfig, RewardRunConfig, PPORunConfig, RLOORunConfig, GRPORunConfig, DPORunConfig, KTORunConfig)
}
TRAINING_GROUP = "Training loop (transformers TrainingArguments)"


def config_class(stage: str, *, source: str | None = None) -> type:
    """The config dataclass of `stage`; ConfigError naming the choices for an unknown one."""
    if stage not in CONFIG_CLASSES:
        raise ConfigError(f"unknown stage '{stage}': choose one of {', '.join(STAGES)}", key="stage", source=source)
    return CONFIG_CLASSES[stage]


# ---- validation ------------------------------------------------------------------------------------


def _init_fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def _type_ok(value: Any, tp: Any) -> bool:
    """Does `value` (from YAML) fit the field type `tp`? Lenient where the type is a library's own class."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if origin in (list, tuple, set):
        if not isinstance(value, (list, tuple)):  # a single value where a list is expected: TRL wraps it
            return bool(args) and not isinstance(value, dict) and _type_ok(value, args[0])
        return not args or all(_type_ok(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if tp is Any or not isinstance(tp, type):
        return True  # library-specific annotations: TRL and transformers check those values themselves
    if issubclass(tp, enum.Enum):
        return isinstance(value, tp) or value in {m.value for m in tp}
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)  # bool, str, NoneType and plain classes


def type_name(tp: Any) -> str:
    """A field type as a person reads it: `int | None`, `list[str]`, `SchedulerType | str`."""
    if isinstance(tp, type) and not typing.get_args(tp):
        return "None" if tp is type(None) else tp.__name__
    text = str(tp).replace("NoneType", "None")
    return re.sub(r"\b(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_])", "", text)  # typing.Optional -> Optional


def _coerce_number(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def validate_dict(stage: str, values: dict, *, source: str | None = None) -> type:
    """Check the keys and value types of `values` against the fields of `stage`'s config class; return the class.
    Numbers written as strings (PyYAML reads `1e-4` as one) are converted in place. Raises ConfigError."""
    cls = config_class(stage, source=source)
    # Resolved configs in existing run folders may carry `run_name_prefix`, a key that never had an effect:
    # dropped, so those runs still resume.
    values.pop("run_name_prefix", None)
    known = _init_fields(cls)
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"see `preflab train {stage} --help-config`"
            raise ConfigError(f"unknown key for stage '{stage}'; {hint}", key=key, source=source)
        tp = hints[key]
        if isinstance(value, str) and not _type_ok(value, tp):
            value = values[key] = _coerce_number(value)
        if not _type_ok(value, tp):
            raise ConfigError(
                f"expected {type_name(tp)}, got {type(value).__name__} {value!r}", key=key, source=source
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
            raise ConfigError(e.reason, key=e.key, source=source) from None
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
        raise ConfigError(f"is required: put `stage: {'|'.join(STAGES)}` in the file", key="stage", source=source)
    return build_config(stage, merged, source=source)


# ---- YAML out --------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A value as YAML and JSON hold it: enums by value, tuples as lists, anything else unknown as text."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


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
        if name in ours or _plain(value) != _plain(_default(f)):
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


# ---- describing the fields (--help-config, the admin page) ---------------------------------------------


def describe_fields(stage: str) -> list[dict]:
    """Every field of `stage`'s config as {name, type, default, help, group}, grouped: PrefLab's groups first
    (model, data, LoRA, then the stage's own), then the fields TRL adds for the method, then transformers'
    TrainingArguments. Defaults are plain values (JSON-ready); `preflab train STAGE --help-config` prints this."""
    cls = config_class(stage)
    hints = typing.get_type_hints(cls)
    training = {f.name for f in dataclasses.fields(TrainingArguments)}
    method_group = f"{stage.upper()} (TRL {cls.__bases__[0].__name__})"
    rows = []
    for f in _init_fields(cls).values():
        group = f.metadata.get("group") or (TRAINING_GROUP if f.name in training else method_group)
        default = _default(f)
        rows.append(
            {
                "name": f.name,
                "type": type_name(hints[f.name]),
                "default": None if default is dataclasses.MISSING else _plain(default),
                "help": " ".join(f.metadata.get("help", "").replace("%%", "%").split()),
                "group": group,
            }
        )
    order = {g: i for i, g in enumerate(dict.fromkeys(r["group"] for r in rows if r["group"] != TRAINING_GROUP))}
    order.pop(method_group, None)
    order[method_group] = len(order)  # after PrefLab's groups
    order[TRAINING_GROUP] = len(order)
    return sorted(rows, key=lambda r: order[r["group"]])


def page_fields(stage: str) -> list[dict]:
    """The fields the admin page offers for `stage`, in order: describe_fields' entries plus `value` (the
    starting value the page fills in) and `choices` (a list to pick from, or null)."""
    cls = config_class(stage)
    described = {r["name"]: r for r in describe_fields(stage)}
    metadata = {f.name: f.metadata for f in dataclasses.fields(cls)}
    return [
        {
            **described[name],
            "value": _plain(value),
            "choices": _plain(cls.page_choices.get(name) or metadata[name].get("choices")),
        }
        for name, value in cls.page_values.items()
    ]
