"""CLI: `preflab tiny-model`, `preflab engine start|stop|list|add|load-adapter|unload-adapter`, `preflab sample`.

preflab tiny-model models/tiny
preflab engine start --model models/tiny --backend transformers --lora sft1=runs/1/adapter
preflab engine load-adapter tiny dpo2 runs/2/adapter     # while it serves; unload-adapter tiny dpo2
preflab sample --dataset demo --model tiny --n 4 --limit 100
preflab engine stop --all
"""

from __future__ import annotations

import json

import click

from db.errors import PrefLabError
from serving.cli.remote import server_url
from serving.cli.root import open_store


def _parse_loras(specs: tuple[str, ...]) -> dict[str, str]:
    loras = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise click.BadParameter(f"{spec!r}: expected NAME=PATH", param_hint="--lora")
        loras[name] = path
    return loras


def register(cli: click.Group) -> None:
    @cli.command("tiny-model")
    @click.argument("out", type=click.Path(file_okay=False))
    @click.option(
        "--size",
        type=click.Choice(["tiny", "small"]),
        default="tiny",
        show_default=True,
        help="tiny: <1M parameters, briefly pre-trained here (tests, demo); small: ~90M, random (benchmarks).",
    )
    @click.option("--reward", is_flag=True, help="A sequence-classification model (num_labels=1) for reward models.")
    def tiny_model(out: str, size: str, reward: bool) -> None:
        """Build a small Qwen2 model with an offline-trained tokenizer in OUT (nothing downloaded).

        The tiny causal LM is pre-trained for ~20 s on chat turns from the shipped corpus so it writes
        word-like answers of varied length; --size small and --reward keep random weights.
        """
        from serving.engines.tiny_model import build_tiny_model

        path = build_tiny_model(out, size=size, reward=reward)
        click.echo(f"built {size}{' reward' if reward else ''} model in {path}")

    @cli.group("engine")
    def engine() -> None:
        """Inference engines: vLLM, the transformers fallback, external OpenAI-compatible URLs."""

    @engine.command("start")
    @click.option(
        "--model",
        "model",
        required=True,
        type=click.Path(exists=True, file_okay=False),
        help="Model folder (save_pretrained).",
    )
    @click.option("--name", help="Served model name and engine name (default: the folder's name).")
    @click.option(
        "--served-name",
        help="Serve the model under this name instead of --name: engines with the same served name form a pool.",
    )
    @click.option("--lora", "loras", multiple=True, metavar="NAME=PATH", help="LoRA adapter to serve; repeatable.")
    @click.option("--port", type=int, help="Port (default: a free one).")
    @click.option("--backend", type=click.Choice(["vllm", "transformers"]), default="vllm", show_default=True)
    @click.option("--timeout", type=float, default=300.0, show_default=True, help="Seconds to wait for health.")
    @click.option("--max-model-len", type=int, help="vLLM: cap the context length (saves KV-cache memory).")
    @click.option("--enforce-eager", is_flag=True, help="vLLM: skip torch.compile (fast start, slower decoding).")
    @click.option(
        "--load-finished-runs",
        is_flag=True,
        help="Load the adapter of each training run the server finishes on this base model, as it finishes.",
    )
    def engine_start(model, name, served_name, loras, port, backend, timeout, max_model_len, enforce_eager,
                     load_finished_runs) -> None:  # fmt: skip
        """Start an engine in the background and wait until it serves /v1/models.

        A second engine for the same model: `--name tiny-2 --served-name tiny`; requests for `tiny` are then
        spread over both (the pool: fewest requests in flight, retried on the other when one fails).
        Adapters can be added and removed later without a restart: `preflab engine load-adapter`.
        """
        from serving.engines.launcher import start_engine

        rec = start_engine(model=model, name=name, backend=backend, loras=_parse_loras(loras), port=port,
                           timeout=timeout, max_model_len=max_model_len, enforce_eager=enforce_eager,
                           served_name=served_name, load_finished_runs=load_finished_runs)  # fmt: skip
        models = ", ".join([rec["model"], *rec["loras"]])
        click.echo(f"engine {rec['name']} ({rec['backend']}) serving {models} at {rec['url']} "
                   f"(pid {rec['pid']}, log {rec['log']})")  # fmt: skip

    @engine.command("stop")
    @click.argument("name", required=False)
    @click.option("--all", "stop_all", is_flag=True, help="Stop every local engine (external ones stay registered).")
    def engine_stop(name, stop_all) -> None:
        """Stop a local engine (or unregister an external one)."""
        from serving.engines import registry
        from serving.engines.launcher import stop_engine

        if not name and not stop_all:
            raise click.UsageError("name an engine, or pass --all")
        names = [r["name"] for r in registry.list_engines() if r["backend"] != "external"] if stop_all else [name]
        for n in names:
            rec = stop_engine(n)
            click.echo(f"stopped {n}" if rec["backend"] != "external" else f"unregistered {n}")
        if stop_all and not names:
            click.echo("no local engines")

    @engine.command("list")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    @click.option("--no-check", is_flag=True, help="Show the last known pool state; do not health-check now.")
    def engine_list(as_json, no_check) -> None:
        """Registered engines with their models, whether they are alive, and their pool state.

        The pool state: healthy or out (it failed its health check: GET /health or /v1/models), and
        `outstanding`, the requests in flight to it from every process using it. Each engine is
        health-checked now unless --no-check.
        """
        import asyncio

        from serving.engines.pool import check_members
        from serving.engines.registry import as_target, list_engines

        if not no_check:
            asyncio.run(check_members([as_target(r, r.get("model") or "") for r in list_engines(states=False)]))
        engines = list_engines()
        if as_json:
            click.echo(json.dumps(engines, ensure_ascii=False, indent=2))
            return
        if not engines:
            click.echo("no engines (preflab engine start --model PATH)")
        for r in engines:
            state = {True: "alive", False: "dead", None: "external"}[r["alive"]]
            pool = f"{r['state']}, {r['outstanding']} outstanding" + (f" ({r['error']})" if r["error"] else "")
            click.echo(f"{r['name']}\t{r['backend']}\t{state}\t{r['url']}\t{','.join(r['models'])}"
                       f"\tpid={r.get('pid') or '-'}\tlog={r.get('log') or '-'}\tpool={pool}")  # fmt: skip

    @engine.command("add")
    @click.argument("name")
    @click.argument("url")
    @click.option("--api-key-env", help="Environment variable holding the API key (the key is never stored).")
    @click.option("--no-check", is_flag=True, help="Register without asking the endpoint for /v1/models.")
    def engine_add(name, url, api_key_env, no_check) -> None:
        """Register an external OpenAI-compatible endpoint (vLLM deployment, Ollama, hosted API)."""
        from serving.engines.launcher import add_external

        rec = add_external(name, url, api_key_env=api_key_env, check=not no_check)
        click.echo(f"registered {name} at {rec['url']} ({', '.join(rec['models']) or 'models not checked'})")

    @engine.command("load-adapter")
    @click.argument("engine_name", metavar="ENGINE")
    @click.argument("name")
    @click.argument("path", required=False, type=click.Path(exists=True, file_okay=False))
    @click.option("--pool", is_flag=True, help="Into every running engine serving ENGINE's base under its name.")
    @click.pass_context
    def engine_load_adapter(ctx, engine_name, name, path, pool) -> None:
        """Load LoRA adapter NAME (folder PATH) into running engine ENGINE without a restart.

        Without PATH, NAME is a registered adapter (preflab models list) and its folder is used. The adapter
        is listed by /v1/models and offered by the arena at once. With --pool, every member of ENGINE's pool
        takes it, or none does.
        """
        from serving.engines.adapters import adapter_source
        from serving.engines.launcher import load_adapter, load_adapter_pool

        if path is None:
            path = adapter_source(open_store(ctx), name)[0]
        records = load_adapter_pool(engine_name, name, path) if pool else [load_adapter(engine_name, name, path)]
        for rec in records:
            click.echo(f"engine {rec['name']} now serves {', '.join([rec['model'], *rec['loras']])}")

    @engine.command("unload-adapter")
    @click.argument("engine_name", metavar="ENGINE")
    @click.argument("name")
    @click.option("--pool", is_flag=True, help="From every member of ENGINE's pool that serves it.")
    def engine_unload_adapter(engine_name, name, pool) -> None:
        """Remove LoRA adapter NAME from running engine ENGINE (the base model stays)."""
        from serving.engines.launcher import unload_adapter, unload_adapter_pool

        records = unload_adapter_pool(engine_name, name) if pool else [unload_adapter(engine_name, name)]
        for rec in records:
            click.echo(f"engine {rec['name']} now serves {', '.join([rec['model'], *rec['loras']])}")

    @cli.command("sample")
    @click.option("--dataset", required=True)
    @click.option("--model", required=True, help="Served model or adapter name (--offline: a model folder too).")
    @click.option("--engine", "engine_name", help="Engine to use (default: the one serving --model).")
    @click.option("--n", type=int, default=4, show_default=True, help="Answers per prompt.")
    @click.option("--temperature", type=float, default=0.8, show_default=True)
    @click.option("--top-p", type=float, default=0.95, show_default=True)
    @click.option("--max-tokens", type=int, default=256, show_default=True)
    @click.option("--seed", type=int, help="Base seed (each request gets its own, derived from it).")
    @click.option("--limit", type=int, help="Only N prompts of the dataset (which ones: --select).")
    @click.option(
        "--select",
        type=click.Choice(["order", "uncertainty"]),
        default="order",
        show_default=True,
        help="order: the first prompts by id; uncertainty: the prompts still short of answers with the highest "
        "priority from `preflab prioritize` first.",
    )
    @click.option("--concurrency", type=int, default=8, show_default=True, help="Requests in flight.")
    @click.option("--min-tokens", type=int, help="At least this many new tokens per answer.")
    @click.option("--ignore-eos", is_flag=True, help="Always generate --max-tokens tokens (benchmarks).")
    @click.option("--offline", is_flag=True, help="Run vLLM's LLM.chat in a batch job instead of an engine.")
    @click.option("--enforce-eager", "eager", is_flag=True, help="--offline: skip torch.compile (fast start).")
    @click.pass_context
    def sample(ctx, dataset, model, engine_name, n, temperature, top_p, max_tokens, seed, limit, select, concurrency,
               min_tokens, ignore_eos, offline, eager) -> None:  # fmt: skip
        """Sample n answers per prompt and store them with provenance (resumable; rerun to continue)."""
        from tqdm import tqdm

        url = None if offline else server_url(ctx)
        if url:  # a server holds the database: run it as a sampling job there and follow it
            from serving.cli import remote

            def show(job: dict) -> None:
                click.echo(
                    f"job {job['id']} {job['status']}: {job['prompts_done']}/{job['prompts_total']} prompts, "
                    f"{job['answers_stored']} answers, {job['failures']} failed",
                    err=True,
                )

            job = remote.sample(
                url,
                dataset=dataset,
                model=model,
                engine=engine_name,
                n=n,
                temperature=temperature,
                top_p=top_p,
                max_tokens=max_tokens,
                seed=seed,
                limit=limit,
                select=select,
                concurrency=concurrency,
                min_tokens=min_tokens,
                ignore_eos=ignore_eos,
                progress=show,
            )
            click.echo(
                f"sampling job {job['id']} {job['status']} via {url}: {job['answers_stored']} answers stored "
                f"for {job['prompts_done']} prompts"
            )
            return
        store = open_store(ctx)
        kw = dict(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed, limit=limit,
                  select=select, min_tokens=min_tokens, ignore_eos=ignore_eos)  # fmt: skip
        bar = tqdm(total=0, unit="prompt", dynamic_ncols=True)

        def progress(p: dict) -> None:
            bar.total = p["prompts_total"]
            bar.n = p["prompts_finished"]
            el = max(p["elapsed_s"], 1e-9)
            bar.set_postfix(answers_s=f"{p['answers_stored'] / el:.1f}", tokens_s=f"{p['completion_tokens'] / el:.1f}",
                            failed=p["failures"], refresh=False)  # fmt: skip
            bar.refresh()

        try:
            if offline:
                from serving.sampling.offline import run_offline_sampling

                report = run_offline_sampling(
                    store, dataset, model, engine=engine_name, progress=progress, enforce_eager=eager, **kw
                )
            else:
                from serving.sampling.sampler import run_sampling

                report = run_sampling(store, dataset, model, engine=engine_name, concurrency=concurrency,
                                      progress=progress, **kw)  # fmt: skip
        finally:
            bar.close()
        click.echo(report.summary())
        for f in report.failures[:20]:
            click.echo(f"  prompt {f['prompt_id']}: {f['error']}", err=True)
        if len(report.failures) > 20:
            click.echo(f"  ... and {len(report.failures) - 20} more", err=True)
        if report.failures:
            raise PrefLabError(f"{len(report.failures)} prompt(s) failed; run the same command again to retry them")
