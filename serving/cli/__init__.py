"""The `preflab` command: the root group (serving/cli/root.py) and one module per area of commands.

    preflab --help
    from serving.cli import cli        # tests call it through click's CliRunner

Each module below has `register(cli)` and is imported plainly: a missing or broken one fails at start-up,
never silently drops its commands. The CLI is the outermost layer: it may use serving/, alignment/ and db/.
"""

from __future__ import annotations

from serving.cli import active, apikey, arena, engine, evaluate, export, imports, loop, rag, server, train, ui, up
from serving.cli.root import cli, main, open_store

for _module in (imports, export, engine, server, rag, train, ui, loop, up, apikey, arena, evaluate, active):
    _module.register(cli)

__all__ = ["cli", "main", "open_store"]
