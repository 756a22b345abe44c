"""`preflab ui`: start the Streamlit annotation app against a PrefLab server.

preflab ui --port 8501 --server http://127.0.0.1:8000
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

APP = Path(__file__).parent / "entry" / "app.py"  # not annotate/app.py: see that module's docstring

# A calm, readable theme; passed as flags so it applies wherever `preflab ui` is started from
# (Streamlit reads .streamlit/config.toml only from the working directory).
THEME = {
    "theme.base": "light",
    "theme.primaryColor": "#4F46E5",
    "theme.backgroundColor": "#FFFFFF",
    "theme.secondaryBackgroundColor": "#F4F5FA",
    "theme.textColor": "#1F2330",
    "theme.borderColor": "#E3E5EE",
    "theme.showWidgetBorder": "true",
    "theme.baseRadius": "0.6rem",
}


def streamlit_command(port: int, *, host: str = "127.0.0.1") -> list[str]:
    """The `streamlit run` command line for the app: headless, no usage statistics, our theme."""
    flags = {
        "server.port": str(port),
        "server.address": host,
        "server.headless": "true",
        "server.fileWatcherType": "none",  # no reloads in production, and no inotify cost
        "browser.gatherUsageStats": "false",
        "client.toolbarMode": "minimal",
        **THEME,
    }
    return [sys.executable, "-m", "streamlit", "run", str(APP), *(f"--{k}={v}" for k, v in flags.items())]


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
