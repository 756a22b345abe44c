"""The CLI shell: fast start, one-line errors, migrations."""

import subprocess
import sys

HEAVY = [
    "torch",
    "transformers",
    "trl",
    "peft",
    "vllm",
    "faiss",
    "streamlit",
    "sentence_transformers",
    "fastapi",
    "uvicorn",
    "datasets",
]


def test_help_starts_without_heavy_imports():
    code = (
        "import sys; from serving.cli import cli; "
        "from click.testing import CliRunner; r = CliRunner().invoke(cli, ['--help']); "
        "assert r.exit_code == 0, r.output; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"`preflab --help` imported: {out.stdout.strip()}"


def test_every_subcommand_help_works(run_cli):
    from serving.cli import cli

    for name, cmd in cli.commands.items():
        r = run_cli(name, "--help")
        assert r.exit_code == 0, (name, r.output)
        for sub in getattr(cmd, "commands", {}):
            r = run_cli(name, sub, "--help")
            assert r.exit_code == 0, (name, sub, r.output)


def test_migrate_list(run_cli):
    r = run_cli("db", "migrate", "--list")
    assert r.exit_code == 0, r.output
    assert "0001_core" in r.output and "pending" not in r.output


def test_unknown_command_is_a_usage_error(run_cli):
    r = run_cli("no-such-command")
    assert r.exit_code == 2
