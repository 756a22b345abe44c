"""`preflab import FILE|FOLDER --format F [--dataset NAME] [--split NAME] [--dry-run] [--skip-invalid]`.

preflab import serving/data/oasst2_sample.jsonl                # format detected from the first record
preflab import pairs.jsonl.gz --format preference --dataset hh --dry-run
preflab import hh_kto/ --split train                           # a save_to_disk or Parquet dataset folder
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from db import importers
from serving.cli.remote import server_url
from serving.cli.root import open_store

PROGRESS_MIN_BYTES = 8 * 2**20  # show a progress bar for files at least this big


def _counts(d: dict[str, int], shown: set[str] | None = None) -> str:
    """'3 prompts, 6 generations, ...'; ratings and feedback only for a file that has some (`shown`)."""
    return ", ".join(
        f"{v} {k}"
        for k, v in d.items()
        if k != "users" and (k not in ("ratings", "feedback") or k in (shown or set()) or v)
    )


def _echo_records(outcome: dict[str, int], empty: dict) -> None:
    """What became of every record read: the outcomes add up to the records read."""
    click.echo(
        f"records: {outcome['read']} read = {outcome['added']} added + {outcome['already_stored']} already stored"
        f" + {outcome['merged']} merged (the same ranking as an earlier record) + {outcome['skipped_invalid']}"
        f" skipped as invalid + {outcome['skipped_empty']} with nothing to import"
    )
    if empty["lines"]:
        shown = ", ".join(map(str, empty["lines"][:10])) + (", ..." if len(empty["lines"]) > 10 else "")
        click.echo(f"with nothing to import ({empty['reason']}): lines {shown}")


def _import_via_server(url: str, file: Path, fmt: str, dataset: str | None, dry_run: bool, skip_invalid: bool) -> None:
    from serving.cli import remote

    r = remote.import_file(url, file, dataset=dataset, fmt=fmt, dry_run=dry_run, skip_invalid=skip_invalid)
    if r["detected"]:
        click.echo(f"detected format: {r['format']}")
    for e in r["skipped"]:
        where = ":".join(str(x) for x in (file, e["line"]) if x is not None)
        click.echo(f"skipped {where}: {'field ' + repr(e['field']) + ': ' if e['field'] else ''}{e['message']}")
    verb = "would add" if dry_run else "added"
    click.echo(
        f"{file}: {r['records']} records read ({r['format']}, engine {r['engine']}, via {url}); "
        f"{verb}: {_counts({k: r['added'][k] for k in r['in_file']})}"
    )
    click.echo(f"already stored: {_counts(r['already_stored'])}")
    _echo_records(r["records_outcome"], r["empty"])
    if r["skipped"]:
        click.echo(f"skipped {len(r['skipped'])} invalid records (listed above)")
    if dry_run:
        click.echo("dry run: nothing written")


def register(cli: click.Group) -> None:
    @cli.command("import")
    @click.argument("file", type=click.Path(path_type=Path))
    @click.option(
        "--format",
        "fmt",
        type=click.Choice(["auto", *importers.FORMATS]),
        default="auto",
        show_default=True,
        help="Input format; auto detects it from the first record and says what it found.",
    )
    @click.option("--dataset", help="Dataset to add to (created if missing). Default: the file's name.")
    @click.option(
        "--split", default=None, help="A dataset folder with several splits: import only this one (default: all)."
    )
    @click.option("--dry-run", is_flag=True, help="Validate and report what would be added; write nothing.")
    @click.option("--skip-invalid", is_flag=True, help="Skip bad records (listed) and import the rest.")
    @click.option(
        "--engine",
        type=click.Choice(["auto", "python", "duckdb"]),
        default="auto",
        show_default=True,
        help="duckdb reads big ranked/preference JSON Lines files natively; auto picks it by size.",
    )
    @click.pass_context
    def import_cmd(
        ctx,
        file: Path,
        fmt: str,
        dataset: str | None,
        split: str | None,
        dry_run: bool,
        skip_invalid: bool,
        engine: str,
    ) -> None:
        """Import FILE (JSON Lines, a JSON array, or CSV for classification; .gz too) into a dataset.

        FILE may be a Hugging Face dataset folder: save_to_disk output (a Dataset or a DatasetDict, every
        split unless --split) or a folder of Parquet shards; errors name the shard and the row.

        Atomic (a bad file changes nothing; the error names file, line and field) and idempotent
        (importing the same file again adds nothing). The duckdb engine checks the whole file, then
        commits files of over 100,000 records 100,000 at a time to bound memory: if the import is
        killed midway, run it again to add the rest. The summary says what became of every record:
        added, already stored, merged (the same ranking as an earlier record) or skipped, with why.
        """

        url = server_url(ctx)
        if url:  # a server holds the database: upload the file to it (serving/cli/remote.py)
            if file.is_dir() or split is not None:
                raise click.ClickException(
                    f"{file}: a dataset folder is imported by the process that holds the database; "
                    "run the import on the server's machine (preflab --db PATH import ...)"
                )
            _import_via_server(url, file, fmt, dataset, dry_run, skip_invalid)
            return
        from db.importers import import_file

        store = open_store(ctx)
        bar = None
        size = file.stat().st_size if file.is_file() else 0
        if size >= PROGRESS_MIN_BYTES:
            from tqdm import tqdm

            bar = tqdm(total=size, unit="B", unit_scale=True, desc=f"import {file.name}", file=sys.stderr)

        def progress(done: int) -> None:
            bar.update(done - bar.n)

        try:
            report = import_file(
                store,
                file,
                fmt=fmt,
                dataset=dataset,
                dry_run=dry_run,
                skip_invalid=skip_invalid,
                engine=engine,
                on_progress=progress if bar is not None else None,
                split=split,
            )
        finally:
            if bar is not None:
                bar.close()
        if report.detected:
            click.echo(f"detected format: {report.format}")
        for e in report.skipped:
            click.echo(f"skipped {e}")
        added = report.added.as_dict()
        verb = "would add" if dry_run else "added"
        shown = {k for k, v in report.in_file.items() if v}
        click.echo(
            f"{file}: {report.records} records read ({report.format}, engine {report.engine}); "
            f"{verb}: {_counts({k: added[k] for k in report.in_file}, shown)}"
        )
        click.echo(f"already stored: {_counts(report.already_stored(), shown)}")
        _echo_records(report.accounting(), {"lines": report.empty, "reason": report.empty_reason})
        if report.skipped:
            click.echo(f"skipped {len(report.skipped)} invalid records (listed above)")
        if dry_run:
            click.echo("dry run: nothing written")
