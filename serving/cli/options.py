"""Click options made from one definition: the export filters of db.export.config.ExportConfig.

@export_filter_options()                                  # every filter, with ExportConfig's defaults
@export_filter_options(TRAIN_FILTERS, defaults=False)     # a few, None unless given (a run's own defaults)
"""

from __future__ import annotations

import click

from db.export.config import filter_fields


def _option_type(f):
    meta = f.metadata
    if "choices" in meta:
        return click.Choice(list(meta["choices"]))
    if "range" in meta:
        return click.FloatRange(*meta["range"])
    if "min" in meta:
        return click.IntRange(min=meta["min"])
    return int if f.type in ("int", int) else None


def export_filter_options(names: tuple[str, ...] | None = None, *, defaults: bool = True):
    """A decorator adding `--min-annotators`, `--source`, ... for the ExportConfig filters `names` (all by default).
    With defaults=False every option is None unless given, so only what the person typed overrides."""

    def decorate(command):
        for f in reversed(filter_fields(names)):
            kwargs = {"type": _option_type(f), "help": f.metadata.get("help")}
            if defaults:
                kwargs.update(default=f.default, show_default=f.default is not None)
            command = click.option("--" + f.name.replace("_", "-"), **kwargs)(command)
        return command

    return decorate
