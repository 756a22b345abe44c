"""The root of the `preflab` command: the click group, its options, the Store of one invocation, `db migrate`.

    preflab --help
    preflab --db my.duckdb db migrate --list

The command groups live beside this module (serving/cli/<group>.py) and are added by serving/cli/__init__.py.
Heavy libraries (torch, transformers, trl, vllm, faiss, streamlit) are imported inside the commands that
need them, so `preflab --help` starts fast (tests/serving/test_cli.py keeps it so).
"""

from __future__ import annotations

import logging
import os

import click

from db import journal
from db.errors import PrefLabError
from db.store import DEFAULT_DB, Store


class PrefLabGroup(click.Group):
    """Turns PrefLabError into one clear line and exit code 1, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PrefLabError as e:
            raise click.ClickException(str(e)) from e


@click.group(cls=PrefLabGroup)
@click.option(
    "--db",
    "db_path",
    envvar="PREFLAB_DB",
    default=DEFAULT_DB,
    show_default=True,
    help="DuckDB file (or set PREFLAB_DB).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO level.")
@click.version_option(package_name="preflab")
@click.pass_context
def cli(ctx: click.Context, db_path: str, verbose: bool) -> None:
    """PrefLab: human preference data and alignment."""
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    ctx.ensure_object(dict)
    ctx.obj["db_path"] = db_path


def open_store(ctx: click.Context) -> Store:
    """The Store for this invocation (opened once, migrated, closed when the command ends)."""
    root = ctx.find_root()
    root.ensure_object(dict)
    if "store" not in root.obj:
        store = Store.open(root.obj.get("db_path") or os.environ.get("PREFLAB_DB", DEFAULT_DB))
        root.obj["store"] = store
        root.call_on_close(store.close)
        journal.replay(store)  # submits a killed server acknowledged and had not stored yet
    return root.obj["store"]


@cli.group("db")
def db_group() -> None:
    """The database file: migrations."""


@db_group.command("migrate")
@click.option("--list", "list_only", is_flag=True, help="List migrations and whether they are applied.")
@click.pass_context
def db_migrate(ctx: click.Context, list_only: bool) -> None:
    """Apply pending schema migrations (name-keyed, recorded in the migrations table)."""
    store = open_store(ctx)  # opening applies pending migrations
    if list_only:
        for name, applied in store.migration_status():
            click.echo(f"{name}\t{applied or 'pending'}")
    else:
        click.echo(f"{store.path}: schema up to date ({len(store.migration_status())} migrations)")


def main() -> None:
    cli(prog_name="preflab")
