"""How the Streamlit annotation app is started: `streamlit run annotate/streamlit_app.py` with our flags.

    subprocess.Popen(streamlit_command(8501), env={**os.environ, "PREFLAB_URL": url})

Used by `preflab ui` and `preflab up`. The app is named by its file, never imported: the UI runs in its own
process and talks to the server over HTTP only.
"""

from __future__ import annotations

import sys
from pathlib import Path

# not annotate/app.py: see that module's docstring
APP = Path(__file__).resolve().parent.parent / "annotate" / "streamlit_app.py"

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
