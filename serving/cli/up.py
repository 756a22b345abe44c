"""CLI: `preflab up`, the whole stack on this machine (server + UI + engine); Ctrl-C stops all of it.

    preflab up --demo        # what `make demo` runs: also the tiny model, the OpenAssistant sample, demo users
    preflab up --engine none # server and UI only

The work itself is serving/stack.py; this module only parses the flags.
"""

from __future__ import annotations

import sys

import click


def register(cli: click.Group) -> None:
    @cli.command("up")
    @click.option(
        "--demo", is_flag=True, help="Also prepare the demo: tiny model, OpenAssistant sample, users, a sampling job."
    )
    @click.option("--host", default="127.0.0.1", show_default=True, help="Address of the server and the UI.")
    @click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Server port.")
    @click.option("--ui-port", default=8501, show_default=True, type=click.IntRange(1, 65535), help="UI port.")
    @click.option(
        "--engine",
        "backend",
        type=click.Choice(["auto", "vllm", "transformers", "none"]),
        default="auto",
        show_default=True,
        help="auto: vLLM when .venv-vllm exists, else transformers.",
    )
    @click.option("--model", default="models/tiny", show_default=True, help="Model folder the engine serves.")
    @click.option("--engine-port", default=8001, show_default=True, type=click.IntRange(1, 65535))
    @click.pass_context
    def up(
        ctx: click.Context, demo: bool, host: str, port: int, ui_port: int, backend: str, model: str, engine_port: int
    ) -> None:
        """Start the server, the UI and a default engine; print the URLs; Ctrl-C stops everything."""
        from serving.stack import UpConfig, run_up

        db_path = ctx.find_root().obj["db_path"]
        cfg = UpConfig(
            db_path=db_path,
            demo=demo,
            host=host,
            port=port,
            ui_port=ui_port,
            backend=backend,
            model=model,
            engine_port=engine_port,
        )
        sys.exit(run_up(cfg, echo=lambda msg: click.echo(msg, err=False)))
