"""`preflab train`, `preflab runs ...`, `preflab models ...`.

preflab train sft --base models/tiny --dataset oasst-demo
preflab train dpo --base models/tiny --adapter sft-run1 --dataset prefs --min-agreement 0.66 --set beta=0.2
preflab train kto --base models/tiny --adapter sft-run1 --dataset thumbs --set desirable_weight=1.2
preflab train ppo --base models/tiny --adapter sft-run1 --data snap.jsonl --set reward_model=RUN/adapter
preflab train sft --base models/tiny --dataset oasst-demo --processes 2            # accelerate launch, DDP
preflab train dpo --base BASE --dataset prefs --accelerate-config alignment/configs/zero2.yaml
preflab runs list ; preflab runs show 3 ; preflab runs cancel 3 ; preflab runs resume 3
preflab models list ; preflab models merge dpo-run2 --out merged/
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time
from pathlib import Path

import click

from alignment import STAGES
from serving.cli.options import export_filter_options
from serving.cli.root import open_store
from serving.engines.registry import pid_alive

TRAIN_FILTERS = ("min_annotators", "min_agreement", "ties", "source")  # export filters of --dataset


def reconcile(store) -> None:
    """Runs started in the background by the CLI: a row still 'running' whose process is gone gets its end."""
    from alignment.launch import record_end
    from db import runs

    for row in runs.active_runs(store):
        if row["status"] == "running" and not pid_alive(row["pid"]):
            record_end(store, row)


def _serve_finished(store, run_id: int, status: str) -> None:
    """A run finished in the foreground: its adapter goes into the running engines on its base that were started
    with --load-finished-runs, as the server's job runner does for runs it finishes."""
    if status != "finished":
        return
    from serving.engines.adapters import load_finished_run

    for r in load_finished_run(store, run_id):
        if r["action"] == "loaded":
            click.echo(f"engine {r['engine']}: now serves {r['model']}")
        else:
            click.echo(f"engine {r['engine']}: could not load {r['model']}: {r.get('error')}", err=True)


def register(cli: click.Group) -> None:

    @cli.command("train")
    @click.argument("stage", type=click.Choice(STAGES))
    @click.option("--base", help="Base model folder (or a registered model name).")
    @click.option("--adapter", help="Parent adapter: a registered model name or an adapter folder.")
    @click.option("--dataset", help="Export this dataset now (in the stage's format) and train on that snapshot.")
    @click.option("--data", "data", type=click.Path(dir_okay=False), help="An existing snapshot file instead.")
    @export_filter_options(TRAIN_FILTERS, defaults=False)
    @click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), help="YAML config.")
    @click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key (repeat).")
    @click.option("--reward-model", help="ppo/rloo/grpo: a reward run's adapter (or its model name).")
    @click.option("--out", "run_dir", type=click.Path(file_okay=False), help="Run directory (default: new one).")
    @click.option("--name", help="Model name for the finished adapter (default STAGE-runID).")
    @click.option("--threads", type=int, help="Torch CPU threads of the job (of each process).")
    @click.option(
        "--processes",
        type=click.IntRange(1, 64),
        help="Train on N processes under `accelerate launch` (DDP: one per GPU, NCCL; gloo on CPU).",
    )
    @click.option(
        "--accelerate-config",
        type=click.Path(exists=True, dir_okay=False),
        help="An accelerate config file: DeepSpeed ZeRO-2/3, FSDP, several machines (alignment/configs/).",
    )
    @click.option("--background", is_flag=True, help="Start and return; watch with `preflab runs show ID`.")
    @click.option(
        "--help-config", is_flag=True, help="Print every config key of STAGE (type, default, help) and exit."
    )
    @click.pass_context
    def train(
        ctx,
        stage,
        base,
        adapter,
        dataset,
        data,
        min_annotators,
        min_agreement,
        ties,
        source,
        config_file,
        overrides,
        reward_model,
        run_dir,
        name,
        threads,
        processes,
        accelerate_config,
        background,
        help_config,
    ):
        """Train STAGE over LoRA (sft, reward, ppo, rloo, grpo, dpo, kto) in a run directory; registers the adapter."""
        if help_config:
            click.echo(config_help(stage))
            return
        from alignment.config import load_config
        from alignment.errors import ConfigError
        from alignment.launch import (
            export_snapshot,
            new_run_dir,
            record_end,
            register_run,
            resolve_model_path,
            resolve_model_ref,
            start_job,
        )
        from db import runs

        if dataset and data:
            raise click.UsageError("give --dataset (export now) or --data (a snapshot file), not both")
        store = open_store(ctx)
        values = {
            k: v
            for k, v in {
                "base": base,
                "adapter": resolve_model_ref(store, adapter),
                "reward_model": resolve_model_ref(store, reward_model),
                "data": data,
                "processes": processes,
                "accelerate_config": str(Path(accelerate_config).resolve()) if accelerate_config else None,
            }.items()
            if v
        }
        run_dir = Path(run_dir) if run_dir else new_run_dir(stage)
        # The base may come from --base, the YAML file or --set: check the one that wins, before anything is
        # exported or written (the job runs in the code folder, so a relative folder is made absolute here).
        if not base or any(o.strip().startswith("base=") for o in overrides):
            placeholder = {"data": values.get("data") or "(check)", "output_dir": str(run_dir)}
            base = load_config(config_file, stage=stage, values={**values, **placeholder}, overrides=overrides).base
        try:
            values["base"] = resolve_model_path(store, base, field="base")
        except ConfigError as e:
            raise click.ClickException(f"base model {e}".replace("key 'base': ", "")) from None
        overrides = tuple(o for o in overrides if not o.strip().startswith("base="))
        if dataset:
            # validate first: a typo in a key should not cost an export
            load_config(
                config_file,
                stage=stage,
                values={**values, "data": "(export)", "output_dir": str(run_dir)},
                overrides=overrides,
            )
            store.dataset_id(dataset)
            filters = {
                "min_annotators": min_annotators,
                "min_agreement": min_agreement,
                "ties": ties,
                "source": source,
            }
            values.update(export_snapshot(store, stage, dataset, run_dir, filters))
        elif not data and not config_file:
            raise click.UsageError("give --dataset NAME or --data SNAPSHOT (or a --config that names data)")
        run_id, cfg = register_run(
            store,
            stage,
            run_dir,
            created_by="cli",
            values=values,
            config_file=config_file,
            overrides=overrides,
            parent=adapter,
            model_name=name,
            threads=threads,
        )
        click.echo(f"run {run_id}: {stage} in {cfg.output_dir} (snapshot {cfg.snapshot_id[:12]})")
        proc = start_job(cfg.output_dir, stage, threads=threads)
        runs.mark_running(store, run_id, proc.pid)
        if background:
            click.echo(f"started in the background (pid {proc.pid}); `preflab runs show {run_id}` to watch")
            return
        _follow(proc, Path(cfg.output_dir))
        status = record_end(store, runs.get_run(store, run_id))
        click.echo(f"run {run_id}: {status}")
        _serve_finished(store, run_id, status)
        if status != "finished":
            raise click.ClickException(f"run {run_id} {status}; see {Path(cfg.output_dir) / 'train.log'}")

    @cli.group("runs")
    def runs_group():
        """Training runs: list, show, cancel, resume."""

    @runs_group.command("list")
    @click.option("--status", type=click.Choice(["queued", "running", "finished", "failed", "cancelled"]))
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_context
    def runs_list(ctx, status, as_json):
        """Runs, newest first."""
        from db import runs

        store = open_store(ctx)
        reconcile(store)
        rows = runs.list_runs(store, status=status)
        if as_json:
            click.echo(json.dumps(rows, ensure_ascii=False, indent=2, default=str))
            return
        for r in rows:
            click.echo(f"{r['id']}\t{r['stage']}\t{r['status']}\t{(r['snapshot_id'] or '')[:12]}\t{r['run_dir']}")

    @runs_group.command("show")
    @click.argument("run_id", type=int)
    @click.option("--log-lines", default=20, show_default=True)
    @click.pass_context
    def runs_show(ctx, run_id, log_lines):
        """One run: status, config, final metrics, lineage and the log's tail."""
        from alignment.runs import final_metrics, read_launch, tail_log
        from db import models_registry, runs

        store = open_store(ctx)
        reconcile(store)
        row = runs.get_run(store, run_id)
        model = models_registry.model_for_run(store, run_id)
        row["latest_metrics"] = final_metrics(row["run_dir"])
        row["model"] = model["name"] if model else None
        row["launch"] = read_launch(row["run_dir"])
        click.echo(json.dumps(row, ensure_ascii=False, indent=2, default=str))
        if row["launch"]:
            launch = row["launch"]
            click.echo(
                f"launch: {launch['launcher']}, {launch['processes']} process(es) per machine, "
                f"world size {launch['world_size']}"
            )
        click.echo("--- log ---")
        click.echo(tail_log(row["run_dir"], lines=log_lines))

    @runs_group.command("cancel")
    @click.argument("run_id", type=int)
    @click.option("--grace", default=30.0, show_default=True, help="Seconds between SIGTERM and SIGKILL.")
    @click.pass_context
    def runs_cancel(ctx, run_id, grace):
        """Stop a running run: SIGTERM (it saves a checkpoint), SIGKILL after --grace seconds."""
        from alignment.launch import record_end
        from db import runs

        store = open_store(ctx)
        row = runs.get_run(store, run_id)
        if row["status"] != "running" or not pid_alive(row["pid"]):
            raise click.ClickException(f"run {run_id} is not running (status {row['status']})")
        try:
            os.killpg(row["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace
        while pid_alive(row["pid"]) and time.monotonic() < deadline:
            time.sleep(0.2)
        if pid_alive(row["pid"]):
            os.killpg(row["pid"], signal.SIGKILL)
        click.echo(f"run {run_id}: {record_end(store, row, cancelled=True)}")

    @runs_group.command("resume")
    @click.argument("run_id", type=int)
    @click.option("--background", is_flag=True)
    @click.pass_context
    def runs_resume(ctx, run_id, background):
        """Continue a cancelled or failed run from its last checkpoint."""
        from alignment.launch import record_end, start_job
        from db import runs

        store = open_store(ctx)
        reconcile(store)
        row = runs.get_run(store, run_id)
        if row["status"] in ("running", "queued", "finished"):
            raise click.ClickException(f"run {run_id} is {row['status']}; only cancelled or failed runs resume")
        proc = start_job(row["run_dir"], row["stage"], resume=True, threads=(row["config"] or {}).get("threads"))
        runs.mark_running(store, run_id, proc.pid)
        if background:
            click.echo(f"run {run_id} resumed in the background (pid {proc.pid})")
            return
        _follow(proc, Path(row["run_dir"]))
        status = record_end(store, runs.get_run(store, run_id))
        click.echo(f"run {run_id}: {status}")
        _serve_finished(store, run_id, status)

    @cli.group("models")
    def models_group():
        """Registered models and adapters: list, register, merge."""

    @models_group.command("list")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_context
    def models_list(ctx, as_json):
        from db import models_registry

        rows = models_registry.list_models(open_store(ctx))
        if as_json:
            click.echo(json.dumps(rows, ensure_ascii=False, indent=2, default=str))
            return
        for r in rows:
            click.echo(f"{r['name']}\t{r['kind']}\t{r['stage'] or ''}\t{r['parent'] or ''}\t{r['path'] or ''}")

    @models_group.command("register")
    @click.argument("name")
    @click.option("--path", required=True, type=click.Path(exists=True, file_okay=False))
    @click.option(
        "--kind",
        type=click.Choice(["base", "adapter", "merged", "external"]),
        default=None,
        help="Default: adapter when the folder holds adapter_config.json, else base.",
    )
    @click.option("--base", help="Base model of an adapter.")
    @click.pass_context
    def models_register(ctx, name, path, kind, base):
        """Register a model folder or an adapter under NAME (engines and the arena select it by name)."""
        from db import models_registry

        is_adapter = (Path(path) / "adapter_config.json").exists()
        kind = kind or ("adapter" if is_adapter else "base")
        if kind == "adapter" and not base:
            from alignment.models import adapter_meta

            base = adapter_meta(path).get("base")
        models_registry.register_model(
            open_store(ctx), name=name, kind=kind, path=str(Path(path).resolve()), base=base, created_by="cli"
        )
        click.echo(f"registered {kind} '{name}'")

    @models_group.command("merge")
    @click.argument("name")
    @click.option("--out", required=True, type=click.Path(file_okay=False))
    @click.option("--register-as", help="Also register the merged model under this name.")
    @click.pass_context
    def models_merge(ctx, name, out, register_as):
        """Write NAME's base with its adapter (and parent chain) merged in: a full model folder."""
        from alignment.models import merge_adapter
        from db import models_registry

        store = open_store(ctx)
        model = models_registry.get_model(store, name)
        if model["kind"] != "adapter":
            raise click.ClickException(f"'{name}' is a {model['kind']} model, not an adapter: nothing to merge")
        path = merge_adapter(model["path"], out, base=model["base"])
        if register_as:
            models_registry.register_model(
                store,
                name=register_as,
                kind="merged",
                path=str(path.resolve()),
                base=model["base"],
                stage=model["stage"],
                parent=name,
                snapshot_id=model["snapshot_id"],
                created_by="cli",
            )
        click.echo(f"merged '{name}' into {path}")


def config_help(stage: str, width: int = 100) -> str:
    """The text of `preflab train STAGE --help-config`: every field of the stage's config class by group, each
    with its type, default, the admin page's starting value where it offers one, and its help."""
    from alignment.config import config_class, describe_fields

    cls = config_class(stage)
    page = cls.page_values
    lines = textwrap.wrap(
        f"Config keys of `preflab train {stage}` ({cls.__name__}): set them in a YAML file (--config FILE, flat "
        "key: value) or with --set KEY=VALUE. A run uses the defaults shown; the admin page fills in its own "
        "starting values (for LoRA on a small model) where it says so.",
        width,
    )
    group = None
    for row in describe_fields(stage):
        if row["group"] != group:
            group = row["group"]
            lines += ["", group]
        start = f"  (admin page: {json.dumps(page[row['name']])})" if row["name"] in page else ""
        lines.append(f"  {row['name']}: {row['type']} = {json.dumps(row['default'])}{start}")
        if row["help"]:
            lines += textwrap.wrap(row["help"], width, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return "\n".join(lines)


def _follow(proc, run_dir: Path) -> None:
    """Print RUN_DIR/train.log as it grows until the process ends."""
    log_path = run_dir / "train.log"
    pos = log_path.stat().st_size if log_path.exists() else 0
    while True:
        done = proc.poll() is not None
        if log_path.exists():
            with log_path.open("rb") as f:
                f.seek(pos)
                chunk = f.read()
                pos += len(chunk)
            if chunk:
                click.echo(chunk.decode("utf-8", errors="replace"), nl=False)
        if done:
            return
        time.sleep(0.5)
