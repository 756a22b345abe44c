"""What an export is asked for: the formats and one ExportConfig with its filters, checked on creation.

    cfg = ExportConfig(format="trl", dataset="oasst-demo", split="test=0.1", min_agreement="0.66")

Values may arrive as strings (CLI, HTTP query) and are converted here. db.export.files writes the files and
db.export.sql builds the SQL from a config.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from db.consensus import SOURCES
from db.errors import InputError

# format -> (file suffix, what it is): the CLI's --format choices, GET /api/formats and the Data page read this
FORMATS = {
    "trl": ("jsonl", "TRL preference pairs, prompt/chosen/rejected as strings (DPO, reward models)"),
    "trl-messages": ("jsonl", "TRL conversational pairs: prompt as messages, one assistant message each"),
    "llamafactory": ("zip", "LLaMA-Factory ranking data plus its dataset_info.json entry"),
    "sft": ("jsonl", "the best-ranked (or reference) answer per prompt, as messages"),
    "classification": ("jsonl", "labelled examples, as imported"),
    "parquet": ("parquet", "preference pairs as Parquet (columnar, for Spark / Ray / pandas)"),
    "kto": ("jsonl", "TRL unpaired preference data (KTO): binary feedback as prompt/completion/label strings"),
    "kto-messages": ("jsonl", "KTO data in TRL's conversational form: prompt as messages, one assistant message"),
    "ratings": ("jsonl", "aspect ratings per answer, HelpSteer-style: prompt, response, one key per aspect"),
}


@dataclass(kw_only=True)
class ExportConfig:
    """What to export. Values may arrive as strings (CLI, HTTP query): they are converted here. Each filter's
    help and allowed values live in its metadata, which the CLI's options are built from (serving.cli.options)."""

    format: str
    dataset: str | None = field(default=None, metadata={"help": "Only this dataset (default: all)."})
    split: str | float | None = field(  # "test=0.1", 0.1 or None (one file)
        default=None, metadata={"help": "Hold out prompts for testing, e.g. test=0.1 (by prompt)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the split."})
    min_annotators: int = field(  # ties count: they are judgments
        default=1, metadata={"help": "Keep pairs with at least N votes.", "min": 1}
    )
    min_agreement: float = field(
        default=0.0,
        metadata={"help": "Keep pairs whose majority has at least this share of the non-tie votes.", "range": (0, 1)},
    )
    ties: str = field(
        default="drop",
        metadata={"help": "keep: export consensus ties too, marked is_tie.", "choices": ("drop", "keep")},
    )
    source: str = field(
        default="all",
        metadata={
            "help": "Which rankings vote: human (people, imports), arena (arena votes) or all.",
            "choices": tuple(SOURCES),
        },
    )
    layout: str = field(
        default="alpaca", metadata={"help": "llamafactory only: the data layout.", "choices": ("alpaca", "sharegpt")}
    )
    sft_prefer: str = field(
        default="ranked",
        metadata={
            "help": "sft only: the best-ranked answer or the reference answer first (the other as fallback).",
            "choices": ("ranked", "reference"),
        },
    )
    consensus: str = field(
        default="majority",
        metadata={
            "help": "How annotators' votes on a pair combine: majority, or weighted by each annotator's "
            "reliability (a Dawid-Skene fit; agreement is then the posterior's confidence).",
            "choices": ("majority", "weighted"),
        },
    )
    min_annotator_quality: float = field(
        default=0.0,
        metadata={
            "help": "Leave out the votes of annotators whose quality (reliability, 0.5 = coin, 1 = never wrong) "
            "is below this.",
            "range": (0, 1),
        },
    )
    margin_aspect: str | None = field(
        default=None,
        metadata={
            "help": "trl only: add a `margin` column (TRL's RewardTrainer reads it): the chosen answer's mean rating "
            "on this aspect minus the rejected one's (0 where either has none)."
        },
    )
    test_fraction: float = field(init=False, default=0.0)

    def __post_init__(self):
        if self.format not in FORMATS:
            raise InputError(f"unknown export format '{self.format}': use one of {', '.join(FORMATS)}", field="format")
        self.test_fraction = parse_split(self.split)
        try:
            self.seed, self.min_annotators = int(self.seed), int(self.min_annotators)
            self.min_agreement = float(self.min_agreement)
            self.min_annotator_quality = float(self.min_annotator_quality)
        except (TypeError, ValueError) as e:
            raise InputError(f"seed and min_annotators must be integers, min_agreement a number ({e})") from None
        if self.min_annotators < 1:
            raise InputError("min_annotators must be 1 or more", field="min_annotators")
        if not 0.0 <= self.min_annotator_quality <= 1.0:
            raise InputError(
                "min_annotator_quality is a reliability from 0 to 1, e.g. 0.7", field="min_annotator_quality"
            )
        if not 0.0 <= self.min_agreement <= 1.0:
            raise InputError("min_agreement is a share: use a number from 0 to 1, e.g. 0.66", field="min_agreement")
        if self.margin_aspect == "":
            self.margin_aspect = None
        if self.margin_aspect is not None and self.format != "trl":
            raise InputError("margin_aspect is for the trl format; drop it or use --format trl", field="margin_aspect")
        for f in fields(self):
            allowed = f.metadata.get("choices")
            if allowed and getattr(self, f.name) not in allowed:
                raise InputError(f"'{getattr(self, f.name)}' is not one of {', '.join(allowed)}", field=f.name)

    def filters(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("format", "test_fraction")}


def parse_split(split: str | float | None) -> float:
    """'test=0.1' (or 0.1) -> 0.1; None or '' -> 0 (no split)."""
    if split is None or split == "" or split == 0:
        return 0.0
    text = str(split).strip()
    name, _, value = text.rpartition("=")
    try:
        fraction = float(value)
    except ValueError:
        fraction = -1.0
    if name not in ("", "test") or not 0.0 < fraction < 1.0:
        raise InputError(
            f"cannot read split '{text}': write test=FRACTION with 0 < FRACTION < 1, e.g. test=0.1", field="split"
        )
    return fraction


def filter_fields(names: tuple[str, ...] | None = None) -> list:
    """The dataclass fields of ExportConfig's filters (every field but format), or of `names` in that order."""
    by_name = {f.name: f for f in fields(ExportConfig) if f.init and f.name != "format"}
    return [by_name[n] for n in names] if names else list(by_name.values())
