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


def test_export_and_train_take_the_export_filters_from_one_definition(run_cli):
    """--source was a choice in export and free text in train; both now come from ExportConfig's fields."""
    from serving.cli import cli

    def option(command, name):
        return next(p for p in cli.commands[command].params if p.name == name)

    for name in ("min_annotators", "min_agreement", "ties", "source"):
        exported, trained = option("export", name), option("train", name)
        assert exported.help == trained.help and type(exported.type) is type(trained.type), name
    # train overrides the run's filters only with what is typed
    params = cli.commands["train"].make_context("train", ["dpo"]).params
    assert [params[n] for n in ("min_annotators", "min_agreement", "ties", "source")] == [None] * 4
    r = run_cli("train", "dpo", "--dataset", "d", "--source", "robots", "--base", "x")
    assert r.exit_code == 2 and "'robots' is not one of 'human', 'arena', 'all'" in r.output, r.output


def test_train_help_config_prints_every_field_of_the_stage(run_cli):
    import dataclasses

    from alignment.config import CONFIG_CLASSES

    for stage in ("ppo", "dpo"):  # dpo last: its output is checked further below
        r = run_cli("train", stage, "--help-config")
        assert r.exit_code == 0, r.output
        for f in dataclasses.fields(CONFIG_CLASSES[stage]):
            if f.init:
                assert f"\n  {f.name}: " in r.output, (stage, f.name)
        assert "\nModel\n" in r.output and "\nLoRA\n" in r.output
        assert "Training loop (transformers TrainingArguments)" in r.output
        assert ("DPO (TRL DPOConfig)" if stage == "dpo" else "\nPPO\n") in r.output
    assert '  loss_type: list[str] = ["sigmoid"]  (admin page: "sigmoid")' in r.output
    assert "  lora_r: int = 16" in r.output and "LoRA rank" in r.output


def test_the_command_a_config_error_promises_exists(run_cli):
    import re

    import pytest

    from alignment.config import load_config
    from alignment.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        load_config(stage="grpo", values={"base": "m", "data": "d", "zzqqxx": 1})
    command = re.search(r"`preflab (.+?)`", str(e.value)).group(1).split()
    r = run_cli(*command)
    assert r.exit_code == 0 and "num_generations" in r.output, r.output
