"""`preflab ui`: start the Streamlit annotation app against a PrefLab server.

preflab ui --port 8501 --server http://127.0.0.1:8000
"""

from __future__ import annotations

import os
import subprocess

import click

from serving.ui_launch import streamlit_command


def register(cli: click.Group) -> None:
    @cli.command("ui")
    @click.option("--port", default=8501, show_default=True, help="Port of the web app.")
    @click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
    @click.option(
        "--server",
        "server_url",
        envvar="PREFLAB_URL",
        default="http://127.0.0.1:8000",
        show_default=True,
        help="URL of the PrefLab server the app talks to (or set PREFLAB_URL).",
    )
    def ui(port: int, host: str, server_url: str) -> None:
        """Start the annotation app (Streamlit): login, ranking, review, data and admin pages."""
        env = {**os.environ, "PREFLAB_URL": server_url.rstrip("/")}
        click.echo(f"PrefLab UI on http://{host}:{port}  (server: {server_url})")
        try:
            raise SystemExit(subprocess.call(streamlit_command(port, host=host), env=env))
        except KeyboardInterrupt:
            raise SystemExit(0) from None
