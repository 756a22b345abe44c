"""The loop's rounds, in order: engine -> sample -> rank -> snapshot -> train -> arena -> report.

    summary = Loop(store, cfg, progress=print_state).run()      # or run_loop(store, cfg)

Each round:
1. starts an engine (transformers by default: it serves LoRA adapters on CPU) on the base model plus the
   current policy's adapter, and samples n answers per training prompt through it (serving.sampling.sampler);
2. ranks them with several synthetic annotators (serving.loop.synthetic: the documented real-words rule, with
   no length term, with noise), written as source 'synthetic'; the Store derives the pairs in SQL;
3. snapshots the pairs (db.export, format trl) and
4. trains DPO over LoRA from the current policy, or a reward model and then PPO (serving.loop.training);
5. serves the new adapter next to its parent and runs a blind arena on held-out prompts, judged by the same rule;
   votes are stored as arena votes (serving.loop.arena). From round 2 on, the new adapter
   also meets the loop's starting policy, so the report shows every round's gain over where the loop began;
6. writes the report (serving.loop.report): win rate with a Wilson interval, curves, agreement, lineage.

The engine is this loop's own subprocess and is stopped when the loop ends, also on errors. It is stopped
during training too: the CPU is better spent on one thing at a time.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from db import paths
from db.errors import PrefLabError
from db.store import Store
from serving.jobs import JobRunner
from serving.loop.arena import run_arena
from serving.loop.config import LoopConfig, LoopState
from serving.loop.prompts import add_prompts, make_prompts
from serving.loop.synthetic import SyntheticConfig, annotate_dataset
from serving.loop.training import CREATED_BY, train_policy

log = logging.getLogger(__name__)


class Loop:
    """One loop run. Kept as an object so the CLI and the server can watch `state` while it runs. Its training
    runs are jobs of `runner` (the server passes its own; without one the loop has a runner of its own)."""

    def __init__(
        self,
        store: Store,
        cfg: LoopConfig,
        *,
        progress: Callable[[LoopState], None] | None = None,
        cancel: threading.Event | None = None,
        runner: JobRunner | None = None,
    ):
        self.store, self.cfg = store, cfg
        self.progress, self.cancel = progress, cancel or threading.Event()
        self.runner, self._own_runner = runner or JobRunner(), runner is None
        self.state = LoopState()
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
        cfg.name = cfg.name or f"loop-{stamp}"
        self.out = Path(cfg.out_dir or paths.home() / "loops" / cfg.name).resolve()
        self.engine_name = f"{cfg.name}-base"  # the engine serves the base model under its own name
        self.engine: dict | None = None

    # ---- progress --------------------------------------------------------------------------------------

    def _step(self, step: str, detail: str = "") -> None:
        if self.cancel.is_set():
            raise PrefLabError("the loop was cancelled")
        self.state.step, self.state.detail = step, detail
        self.state.history.append(
            {
                "round": self.state.round,
                "step": step,
                "detail": detail,
                "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
        )
        log.info("loop round %d: %s %s", self.state.round, step, detail)
        if self.progress:
            self.progress(self.state)

    # ---- engine ----------------------------------------------------------------------------------------

    def _start_engine(self, loras: dict[str, str]) -> None:
        from serving.engines.launcher import start_engine

        self._stop_engine()
        # The engine inherits this process's environment: cap its torch threads the same way as training's.
        # (Set only for the start-up call; the variable is restored at once.)
        saved = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = str(self.cfg.threads)
        try:
            self.engine = start_engine(
                model=self.cfg.base_model, name=self.engine_name, backend=self.cfg.backend, loras=loras
            )
        finally:
            if saved is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = saved

    def _stop_engine(self) -> None:
        from serving.engines import registry
        from serving.engines.launcher import stop_engine

        try:
            record = registry.get_engine(self.engine_name)
        except PrefLabError:
            record = None
        if record is not None:
            stop_engine(self.engine_name)
        self.engine = None

    # ---- the loop --------------------------------------------------------------------------------------

    def run(self) -> dict:
        """Run every round and write the report; returns the summary (also in out/report.json)."""
        cfg, t0 = self.cfg, time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        summary: dict = {"config": asdict(cfg), "out_dir": str(self.out), "rounds": []}
        all_prompts = make_prompts(cfg.rounds * cfg.train_prompts + cfg.heldout_prompts, cfg.seed)
        heldout = all_prompts[: cfg.heldout_prompts]
        heldout_ds = f"{cfg.name}-heldout"
        add_prompts(self.store, heldout_ds, heldout)
        # the policy: (served name, adapter folder or None for the base model)
        policy = (
            (Path(cfg.parent_adapter).name, str(Path(cfg.parent_adapter).resolve()))
            if cfg.parent_adapter
            else (self.engine_name, None)
        )
        self.start_policy = policy  # rounds after the first are also judged against it
        try:
            for r in range(1, cfg.rounds + 1):
                self.state.round = r
                start = cfg.heldout_prompts + (r - 1) * cfg.train_prompts
                result = self._round(r, all_prompts[start : start + cfg.train_prompts], heldout, policy)
                summary["rounds"].append(result)
                policy = (result["lineage"]["adapter"], result["lineage"]["adapter_path"])
                summary["seconds"] = time.perf_counter() - t0
                self._write(summary)
        except BaseException as e:
            self.state.error = str(e)
            raise
        finally:
            self._stop_engine()
            if self._own_runner:  # a training job left by an error or Ctrl-C
                self.runner.shutdown()
        summary["seconds"] = time.perf_counter() - t0
        self.state.report = str(self._write(summary))
        self._step("done", self.state.report)
        return summary

    def _write(self, summary: dict) -> Path:
        from serving.loop.report import write_report

        return write_report(summary, self.out)

    def _round(self, r: int, prompts: list[str], heldout: list[str], policy: tuple[str, str | None]) -> dict:
        from db.models_registry import unique_name

        cfg = self.cfg
        dataset = f"{cfg.name}-r{r}"
        round_dir = self.out / f"round-{r}"
        round_dir.mkdir(parents=True, exist_ok=True)
        add_prompts(self.store, dataset, prompts)
        parent_name, parent_path = policy
        loras = {parent_name: parent_path} if parent_path else {}
        result: dict = {"round": r, "method": cfg.method, "noise": cfg.noise, "dataset": dataset}

        self._step("engine", f"starting {cfg.backend} engine")
        self._start_engine(loras)
        self._step("sample", f"{len(prompts)} prompts x {cfg.n} from {parent_name}")
        result["sampling"] = self._sample(dataset, parent_name)

        self._step("rank", f"{cfg.annotators} synthetic annotators, noise {cfg.noise}")
        scfg = SyntheticConfig(annotators=cfg.annotators, noise=cfg.noise, seed=cfg.seed + r)
        result["annotation"] = annotate_dataset(self.store, dataset, scfg).as_dict()
        result["agreement"] = self._agreement(dataset)

        self._step("snapshot", "pairs -> trl snapshot")
        snap = self._snapshot(dataset, round_dir)
        result["snapshot"] = snap

        self._stop_engine()  # two cores: training gets them all
        self._step("train", cfg.method)
        child = unique_name(self.store, f"{cfg.name}-r{r}-{cfg.method}")
        training = train_policy(
            self.store,
            self.runner,
            cfg,
            snap=snap,
            parent_path=parent_path,
            round_dir=round_dir,
            child=child,
            cancel=self.cancel,
            step=lambda detail: self._step("train", detail),
        )
        result["training"] = training

        self._step("arena", f"{child} vs {parent_name} on {len(heldout)} held-out prompts")
        start_name, start_path = self.start_policy
        served = {**loras, child: training["adapter"]}
        if start_path:
            served[start_name] = start_path
        self._start_engine(served)
        arena = functools.partial(
            run_arena,
            self.store,
            cfg,
            url=self.engine["url"],
            engine=self.engine_name,
            heldout=heldout,
            child=child,
            adapters=set(served),  # a model is an adapter unless it is the base model
        )
        result["arena"] = arena(parent=parent_name, round_no=r)
        if start_name != parent_name:  # an iterated round: is it still better than where the loop started?
            self._step("arena", f"{child} vs {start_name} (the loop's start) on {len(heldout)} held-out prompts")
            result["arena_vs_start"] = arena(parent=start_name, round_no=1000 + r)
        self._stop_engine()
        result["lineage"] = {
            "dataset": dataset,
            "snapshot_id": snap["snapshot_id"],
            "run_id": training.get("run_id"),
            "run_dir": training["run_dir"],
            "adapter": child,
            "adapter_path": training["adapter"],
            "parent": parent_name,
            "parent_path": parent_path,
        }
        return result

    # ---- steps -----------------------------------------------------------------------------------------

    def _sample(self, dataset: str, model: str) -> dict:
        from serving.sampling.sampler import run_sampling

        cfg, t0 = self.cfg, time.perf_counter()
        report = run_sampling(
            self.store,
            dataset,
            model,
            engine=self.engine_name,
            n=cfg.n,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_tokens=cfg.max_tokens,
            concurrency=32,
            cancel=self.cancel,
            created_by=CREATED_BY,
        )
        if report.failures:
            raise PrefLabError(f"sampling failed for {len(report.failures)} prompts: {report.failures[0]}")
        return {
            "model": model,
            "engine": cfg.backend,
            "n": cfg.n,
            "prompts": report.prompts_total,
            "generations": report.answers_stored,
            "duplicates_dropped": report.duplicates_dropped,
            "empty_dropped": report.empty_dropped,
            "seconds": time.perf_counter() - t0,
        }

    def _agreement(self, dataset: str) -> dict:
        """The numeric agreement figures of db.agreement (tau-b, Kendall's W, alpha, pair agreement)."""
        from db.agreement import dataset_stats

        stats = dataset_stats(self.store, dataset)
        a = stats.get("agreement") or {}
        out = {k: v for k, v in a.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        out["consensus_pairs"] = stats.get("counts", {}).get("consensus_pairs")
        out["tau_b_vs_consensus"] = {
            r["annotator"]: r.get("tau_b_vs_consensus") for r in a.get("per_annotator", a.get("annotators", []))
        }
        return out

    def _snapshot(self, dataset: str, round_dir: Path) -> dict:
        from db.export import export

        res = export(self.store, "trl", round_dir / "snapshot.jsonl", dataset=dataset)
        path = Path(res.path)
        pairs = [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
        if not pairs:
            raise PrefLabError(f"the snapshot of {dataset} has no pairs: every ranking was a tie?")
        return {
            "snapshot_id": res.snapshot_id,
            "path": str(path),
            "rows": len(pairs),
            "counts": res.counts,
            "dataset": dataset,
            # the rule has no length term: chosen and rejected answers should be about as long as each other
            "mean_length": {side: sum(len(p[side]) for p in pairs) / len(pairs) for side in ("chosen", "rejected")},
        }


def run_loop(
    store: Store,
    cfg: LoopConfig,
    *,
    progress: Callable[[LoopState], None] | None = None,
    cancel: threading.Event | None = None,
) -> dict:
    """Run the loop (see the module docstring); returns the summary written to report.json."""
    return Loop(store, cfg, progress=progress, cancel=cancel).run()
