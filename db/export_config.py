"""What an export is asked for: the formats and one ExportConfig with its filters, checked on creation.

    cfg = ExportConfig(format="trl", dataset="oasst-demo", split="test=0.1", min_agreement="0.66")

Values may arrive as strings (CLI, HTTP query) and are converted here. db.export writes the files and
db.export_sql builds the SQL from a config.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from db.consensus import SOURCES
from db.errors import InputError

FORMATS = ("trl", "trl-messages", "llamafactory", "sft", "classification", "parquet")


@dataclass(kw_only=True)
class ExportConfig:
    """What to export. Values may arrive as strings (CLI, HTTP query): they are converted here."""

    format: str
    dataset: str | None = None
    split: str | float | None = None  # "test=0.1", 0.1 or None (one file)
    seed: int = 0
    min_annotators: int = 1  # votes on a pair (ties count: they are judgments)
    min_agreement: float = 0.0  # share of non-tie votes for the majority direction
    ties: str = "drop"  # keep: consensus ties are exported too, marked is_tie
    source: str = "all"  # human | arena | all (db.consensus.SOURCES)
    layout: str = "alpaca"  # llamafactory: alpaca | sharegpt
    sft_prefer: str = "ranked"  # sft: ranked (best-ranked, else reference) | reference (reference, else ranked)
    test_fraction: float = field(init=False, default=0.0)

    def __post_init__(self):
        if self.format not in FORMATS:
            raise InputError(f"unknown export format '{self.format}': use one of {', '.join(FORMATS)}", field="format")
        self.test_fraction = parse_split(self.split)
        try:
            self.seed, self.min_annotators = int(self.seed), int(self.min_annotators)
            self.min_agreement = float(self.min_agreement)
        except (TypeError, ValueError) as e:
            raise InputError(f"seed and min_annotators must be integers, min_agreement a number ({e})") from None
        if self.min_annotators < 1:
            raise InputError("min_annotators must be 1 or more", field="min_annotators")
        if not 0.0 <= self.min_agreement <= 1.0:
            raise InputError("min_agreement is a share: use a number from 0 to 1, e.g. 0.66", field="min_agreement")
        for name, allowed in (
            ("ties", ("drop", "keep")),
            ("source", tuple(SOURCES)),
            ("layout", ("alpaca", "sharegpt")),
            ("sft_prefer", ("ranked", "reference")),
        ):
            if getattr(self, name) not in allowed:
                raise InputError(f"'{getattr(self, name)}' is not one of {', '.join(allowed)}", field=name)

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
