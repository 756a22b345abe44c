"""Regenerate the command reference in docs/cli.md from `preflab --help`, so it cannot drift.

.venv/bin/python docs/gen_cli_reference.py          # rewrite docs/cli.md between the markers
.venv/bin/python docs/gen_cli_reference.py --check  # exit 1 if docs/cli.md is stale (tests/test_docs.py)
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from click.testing import CliRunner

from serving.cli import cli

REFERENCE = Path(__file__).resolve().parent / "cli.md"
BEGIN, END = "<!-- cli-reference:begin -->", "<!-- cli-reference:end -->"


def _help(args: list[str]) -> str:
    result = CliRunner().invoke(cli, [*args, "--help"], prog_name="preflab", terminal_width=100)
    return result.output.rstrip()


def render() -> str:
    parts = ["```text", "$ preflab --help", _help([]), "```"]
    for name in sorted(cli.commands):
        cmd = cli.commands[name]
        subs = sorted(cmd.commands) if isinstance(cmd, click.Group) else []
        for args in [[name]] + [[name, s] for s in subs]:
            parts += ["", f"### preflab {' '.join(args)}", "", "```text", _help(args), "```"]
    return "\n".join(parts)


def main() -> int:
    text = REFERENCE.read_text(encoding="utf-8")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    new = f"{head}{BEGIN}\n{render()}\n{END}{tail}"
    if "--check" in sys.argv:
        if new != text:
            print("docs/cli.md is stale: run .venv/bin/python docs/gen_cli_reference.py")  # noqa: T201 (a script: its output is the message)
            return 1
        return 0
    REFERENCE.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
