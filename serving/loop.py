"""The closed loop in one call: sample -> rank (synthetic annotators) -> pairs -> snapshot -> train -> arena -> report.

    preflab loop --base models/tiny --preset demo            # one DPO round, report under .preflab/loops/
    summary = run_loop(store, LoopConfig(base_model="models/tiny", **PRESETS["demo"]))

Each round:
1. starts an engine (transformers by default: it serves LoRA adapters on CPU) on the base model plus the
   current policy's adapter, and samples n answers per training prompt through it (serving.sampler);
2. ranks them with several synthetic annotators (serving.synthetic: the documented keyword-then-shorter rule,
   with noise), written as source 'synthetic'; the Store derives the pairs in SQL;
3. snapshots the pairs (db.export, format trl) and
4. trains DPO over LoRA from the current policy (or, with method 'ppo', a reward model and then PPO with it);
5. registers the adapter, serves it next to its parent and runs a blind arena on held-out prompts, judged by
   the same rule; votes are stored as arena votes;
6. writes the report (serving.report): win rate with a Wilson interval, curves, agreement, lineage.

The engine is this loop's own subprocess and is stopped when the loop ends, also on errors. It is stopped
during training too: the CPU is better spent on one thing at a time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from db import paths
from db.errors import PrefLabError
from db.hashing import prompt_hash
from db.store import Batch, Store
from serving.synthetic import SyntheticConfig, annotate_dataset, judge, rule_reward

log = logging.getLogger(__name__)
_PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Single tokens of the tiny model's tokenizer (" water" is one token), so a tiny model can emit them by chance
# and DPO has examples to learn from.
KEYWORDS = ["water", "food", "health", "robot", "people", "climate", "farm", "diet", "logic", "chord", "acid", "text"]
TOPICS = [
    "rivers",
    "cities",
    "breakfast",
    "machines",
    "friendship",
    "the weather",
    "gardens",
    "music",
    "travel",
    "old books",
    "the ocean",
    "mountains",
    "a small village",
    "winter",
    "markets",
    "bicycles",
    "the moon",
    "a library",
    "school",
    "trains",
]
STYLES = [
    "Tell me about {topic}.",
    "Write one sentence about {topic}.",
    "Describe {topic} briefly.",
    "What do you think of {topic}?",
]

# Chosen with the real pipeline on the (pre-trained) tiny model for a round of a few minutes; docs/loop.md and
# docs/benchmarks.md say what they reach there (bench/loop.py measures it).
PRESETS: dict[str, dict] = {
    "demo": {
        "train_prompts": 160,
        "heldout_prompts": 64,
        "n": 4,
        "max_tokens": 24,
        "temperature": 1.0,
        "annotators": 3,
        "noise": 0.1,
        "learning_rate": 2e-3,
        "epochs": 2.0,
        "beta": 0.1,
        "lora_r": 16,
        "batch_size": 16,
        "arena_turns": 2,
    },
    # CI-sized: seconds of training, just enough to check the plumbing and the report's arithmetic
    "test": {
        "train_prompts": 6,
        "heldout_prompts": 4,
        "n": 3,
        "max_tokens": 8,
        "temperature": 1.0,
        "annotators": 2,
        "noise": 0.2,
        "learning_rate": 1e-3,
        "epochs": 1.0,
        "max_steps": 2,
        "beta": 0.1,
        "lora_r": 4,
        "batch_size": 4,
        "arena_turns": 1,
        "rm_max_steps": 2,
        "ppo_max_steps": 2,
    },
}


@dataclass(kw_only=True)
class LoopConfig:
    base_model: str  # model folder (e.g. models/tiny)
    name: str | None = None  # datasets <name>-r<round>, <name>-heldout; adapters <name>-r<round>-<method>
    # (default: loop-<UTC time>, so a second loop never finds the first one's prompts already ranked)
    method: str = "dpo"  # dpo | ppo (reward model, then PPO with it)
    rounds: int = 1
    parent_adapter: str | None = None  # adapter folder of the current policy (None: the base model)
    train_prompts: int = 128  # per round; each round gets fresh prompts
    heldout_prompts: int = 64  # disjoint from every round's training prompts
    n: int = 4  # answers per prompt
    max_tokens: int = 24  # short answers: the tiny model learns the length rule from them quickly
    temperature: float = 1.0  # the policy's own distribution: DPO's pairs should be on-policy
    top_p: float = 1.0
    annotators: int = 3
    noise: float = 0.1
    learning_rate: float = 2e-3  # high for LoRA, on purpose: a tiny model and about a hundred steps
    epochs: float = 2.0
    max_steps: int = -1
    beta: float = 0.1
    lora_r: int = 16
    batch_size: int = 16
    # method 'ppo': the reward model's and the policy's own budgets
    rm_learning_rate: float = 1e-3
    rm_epochs: float = 2.0
    rm_max_steps: int = -1
    ppo_learning_rate: float = 1e-3
    ppo_max_steps: int = 60
    arena_turns: int = 1  # answers per model per held-out prompt (votes = held-out prompts x turns)
    backend: str = "transformers"  # engine for sampling and the arena: transformers | vllm
    threads: int = 1  # torch threads of the training job: more than one thrashes a small, shared CPU
    seed: int = 0
    out_dir: str | None = None  # report folder (default: PREFLAB_HOME/loops/<name>-<timestamp>)

    def __post_init__(self):
        if self.method not in ("dpo", "ppo"):
            raise PrefLabError(f"--method {self.method}: use dpo or ppo")
        if self.backend not in ("transformers", "vllm"):
            raise PrefLabError(f"--engine {self.backend}: use transformers or vllm")
        if self.n < 2:
            raise PrefLabError(f"--n {self.n}: a ranking needs at least 2 answers per prompt")
        if self.rounds < 1 or self.train_prompts < 1 or self.heldout_prompts < 1 or self.arena_turns < 1:
            raise PrefLabError("--rounds, --train-prompts, --heldout-prompts and --arena-turns must be >= 1")
        total = self.rounds * self.train_prompts + self.heldout_prompts
        if total > len(KEYWORDS) * len(TOPICS) * len(STYLES) * 10:
            raise PrefLabError(f"{total} prompts requested; at most {len(KEYWORDS) * len(TOPICS) * len(STYLES) * 10}")
        if not (Path(self.base_model) / "config.json").exists():
            raise PrefLabError(
                f"--base {self.base_model}: not a model folder (no config.json); build one with "
                "`preflab tiny-model models/tiny`"
            )
        if self.parent_adapter and not (Path(self.parent_adapter) / "adapter_config.json").exists():
            raise PrefLabError(f"--parent {self.parent_adapter}: not a LoRA adapter folder (no adapter_config.json)")


@dataclass
class LoopState:
    """What a running loop reports to a progress callback (and the server's GET /api/loop)."""

    step: str = "starting"
    round: int = 0
    detail: str = ""
    report: str | None = None
    error: str | None = None
    history: list[dict] = field(default_factory=list)


def make_prompts(count: int, seed: int) -> list[str]:
    """`count` distinct prompts that each request a keyword, in a seeded order (the same seed, the same list)."""
    combos = [(s, t, k, v) for s in STYLES for t in TOPICS for k in KEYWORDS for v in range(10)]
    random.Random(seed).shuffle(combos)
    out = []
    for style, topic, keyword, variant in combos[:count]:
        suffix = f" (#{variant})" if variant else ""
        out.append(f'{style.format(topic=topic)} Use the word "{keyword}".{suffix}')
    return out


def _add_prompts(store: Store, dataset: str, texts: list[str]) -> None:
    batch = Batch()
    for text in texts:
        messages = [{"role": "user", "content": text}]
        batch.prompts.append(
            {
                "key": prompt_hash(messages),
                "messages": json.dumps(messages, ensure_ascii=False),
                "source": "preflab loop",
            }
        )
    store.write_batch(dataset, batch, created_by="preflab-loop")


class Loop:
    """One loop run. Kept as an object so the CLI and the server can watch `state` while it runs."""

    def __init__(
        self,
        store: Store,
        cfg: LoopConfig,
        *,
        progress: Callable[[LoopState], None] | None = None,
        cancel: threading.Event | None = None,
    ):
        self.store, self.cfg = store, cfg
        self.progress, self.cancel = progress, cancel or threading.Event()
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
        _add_prompts(self.store, heldout_ds, heldout)
        # the policy: (served name, adapter folder or None for the base model)
        policy = (
            (Path(cfg.parent_adapter).name, str(Path(cfg.parent_adapter).resolve()))
            if cfg.parent_adapter
            else (self.engine_name, None)
        )
        try:
            for r in range(1, cfg.rounds + 1):
                self.state.round = r
                start = cfg.heldout_prompts + (r - 1) * cfg.train_prompts
                result = self._round(r, all_prompts[start : start + cfg.train_prompts], heldout, heldout_ds, policy)
                summary["rounds"].append(result)
                policy = (result["lineage"]["adapter"], result["lineage"]["adapter_path"])
                summary["seconds"] = time.perf_counter() - t0
                self._write(summary)
        except BaseException as e:
            self.state.error = str(e)
            raise
        finally:
            self._stop_engine()
        summary["seconds"] = time.perf_counter() - t0
        self.state.report = str(self._write(summary))
        self._step("done", self.state.report)
        return summary

    def _write(self, summary: dict) -> Path:
        from serving.report import write_report

        return write_report(summary, self.out)

    def _round(
        self, r: int, prompts: list[str], heldout: list[str], heldout_ds: str, policy: tuple[str, str | None]
    ) -> dict:
        cfg = self.cfg
        dataset = f"{cfg.name}-r{r}"
        round_dir = self.out / f"round-{r}"
        round_dir.mkdir(parents=True, exist_ok=True)
        _add_prompts(self.store, dataset, prompts)
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
        child = _unique_model_name(self.store, f"{cfg.name}-r{r}-{cfg.method}")
        training = self._train(snap, parent_path, round_dir, child)
        result["training"] = training

        self._step("arena", f"{child} vs {parent_name} on {len(heldout)} held-out prompts")
        self._start_engine({**loras, child: training["adapter"]})
        result["arena"] = self._arena(heldout, parent_name, child)
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
        from serving.sampler import run_sampling

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
            created_by="preflab-loop",
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
        rows = sum(1 for line in path.read_text(encoding="utf-8").split("\n") if line.strip())
        if rows == 0:
            raise PrefLabError(f"the snapshot of {dataset} has no pairs: every ranking was a tie?")
        return {
            "snapshot_id": res.snapshot_id,
            "path": str(path),
            "rows": rows,
            "counts": res.counts,
            "dataset": dataset,
        }

    def _train(self, snap: dict, parent_path: str | None, round_dir: Path, child: str) -> dict:
        """DPO from the policy; or a reward model, then PPO with it. Training runs as `python -m alignment`."""
        cfg, t0 = self.cfg, time.perf_counter()
        common = {
            "base": str(Path(cfg.base_model).resolve()),
            "data": snap["path"],
            "snapshot_id": snap["snapshot_id"],
            "snapshot_origin": {"dataset": snap.get("dataset"), "format": "trl", "loop": cfg.name},
            "per_device_train_batch_size": cfg.batch_size,
            "lora_r": cfg.lora_r,
            "lora_alpha": 2 * cfg.lora_r,
            "logging_steps": 1,
            "save_strategy": "no",
            "seed": cfg.seed,
            "report_to": [],
            "activation_checkpointing": False,
        }  # recomputation only costs time on models this small
        if cfg.method == "dpo":
            run = self._train_stage(
                "dpo",
                round_dir / "dpo",
                {
                    **common,
                    "adapter": parent_path,
                    "learning_rate": cfg.learning_rate,
                    "num_train_epochs": cfg.epochs,
                    "max_steps": cfg.max_steps,
                    "beta": cfg.beta,
                    "max_length": 256,
                },
                child,
            )
            return {**run, "seconds": time.perf_counter() - t0}
        rm = self._train_stage(
            "reward",
            round_dir / "reward",
            {
                **common,
                "learning_rate": cfg.rm_learning_rate,
                "num_train_epochs": cfg.rm_epochs,
                "max_steps": cfg.rm_max_steps,
                "max_length": 256,
            },
            f"{child}-rm",
        )
        run = self._train_stage(
            "ppo",
            round_dir / "ppo",
            {
                **common,
                "adapter": parent_path,
                "reward_model": rm["adapter"],
                "learning_rate": cfg.ppo_learning_rate,
                "max_steps": cfg.ppo_max_steps,
                "max_completion_length": cfg.max_tokens,
                "temperature": cfg.temperature,
            },
            child,
        )
        return {**run, "reward_model": rm, "seconds": time.perf_counter() - t0}

    def _train_stage(self, stage: str, run_dir: Path, values: dict, model_name: str) -> dict:
        import subprocess
        import sys

        from alignment.job import prepare_run
        from alignment.runs import LOG, METRICS, read_result

        values = {k: v for k, v in values.items() if v is not None}
        prepare_run(stage, run_dir, values=values)
        registered = _register_run(self.store, stage, run_dir, values)
        self._step("train", f"{stage} in {run_dir}")
        env = {
            **os.environ,
            "OMP_NUM_THREADS": str(self.cfg.threads),
            "MKL_NUM_THREADS": str(self.cfg.threads),
            "TOKENIZERS_PARALLELISM": "false",
        }
        with open(run_dir / "loop-subprocess.log", "ab") as logf:
            proc = subprocess.Popen(
                [sys.executable, "-m", "alignment", stage, str(run_dir)],
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=str(_PROJECT_ROOT),
                env=env,
            )
            _mark_running(self.store, registered, proc.pid)
            try:
                while proc.poll() is None:
                    if self.cancel.is_set():
                        break
                    time.sleep(0.5)
            finally:  # cancelled, Ctrl-C or an error here: the job must not outlive the loop
                if proc.poll() is None:
                    proc.terminate()  # the job saves a checkpoint on SIGTERM and exits with 3
                    try:
                        proc.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
        result = read_result(run_dir) or {}
        _finish_run(self.store, registered, result)
        if proc.returncode != 0 or result.get("status") != "finished":
            from alignment.runs import tail_log

            raise PrefLabError(
                f"{stage} training failed (exit {proc.returncode}); log {run_dir / LOG}:\n"
                f"{tail_log(run_dir, lines=20)}"
            )
        adapter = result["adapter"]
        _register_model(
            self.store,
            _unique_model_name(self.store, model_name),
            stage,
            adapter,
            values,
            registered,
            result.get("metrics"),
        )
        return {
            "stage": stage,
            "run_id": registered,
            "run_dir": str(run_dir),
            "adapter": adapter,
            "metrics": str(run_dir / METRICS),
            "final": result.get("metrics", {}),
        }

    def _arena(self, heldout: list[str], parent: str, child: str) -> dict:
        """Blind A/B on held-out prompts: each side answers, the order is a coin flip, the rule judges."""
        from serving.ratings import RatingsConfig, compute_leaderboard
        from serving.report import arena_tally

        cfg = self.cfg
        rng = random.Random(f"arena:{cfg.seed}:{self.state.round}")
        answers = asyncio.run(_collect_answers(self.engine["url"], heldout, [parent, child], cfg))
        votes, rewards, lengths = [], {parent: [], child: []}, {parent: [], child: []}
        for i, prompt in enumerate(heldout):
            for t in range(cfg.arena_turns):
                pa, ch = answers[parent][i][t], answers[child][i][t]
                for m, text in ((parent, pa), (child, ch)):
                    rewards[m].append(rule_reward(prompt, text))
                    lengths[m].append(len(text))
                a, b, text_a, text_b = (parent, child, pa, ch) if rng.random() < 0.5 else (child, parent, ch, pa)
                votes.append(
                    {
                        "prompt": prompt,
                        "model_a": a,
                        "model_b": b,
                        "text_a": text_a,
                        "text_b": text_b,
                        "winner": judge(prompt, text_a, text_b),
                    }
                )
        stored = _store_votes(self.store, votes, engine=self.engine_name, dataset=f"{cfg.name}-heldout")
        board = compute_leaderboard(votes, RatingsConfig(bootstrap_rounds=500, seed=cfg.seed))

        def mean(xs):
            return sum(xs) / len(xs) if xs else None

        mp, mc = mean(rewards[parent]), mean(rewards[child])
        return {
            "prompts": len(heldout),
            "turns": cfg.arena_turns,
            "tally": arena_tally(votes, child),
            "stored_votes": stored,
            "leaderboard": board.rows,
            "mean_reward": {
                "parent": mp,
                "child": mc,
                "delta": mc - mp,
                "mean_length": {"parent": mean(lengths[parent]), "child": mean(lengths[child])},
            },
        }


async def _collect_answers(url: str, prompts: list[str], models: list[str], cfg: LoopConfig) -> dict[str, list]:
    """{model: [[turns answers] per prompt]} from an OpenAI-compatible engine; unseeded so the engine batches."""
    import httpx

    sem = asyncio.Semaphore(16)
    out: dict[str, list] = {m: [None] * len(prompts) for m in models}
    async with httpx.AsyncClient(base_url=url, timeout=600.0) as client:

        async def one(model: str, i: int) -> None:
            body = {
                "model": model,
                "messages": [{"role": "user", "content": prompts[i]}],
                "n": cfg.arena_turns,
                "max_tokens": cfg.max_tokens,
                "temperature": cfg.temperature,
                "top_p": cfg.top_p,
            }
            async with sem:
                r = await client.post("/chat/completions", json=body)
            if r.status_code != 200:
                raise PrefLabError(f"engine answered {r.status_code} for {model}: {r.text[:300]}")
            choices = sorted(r.json()["choices"], key=lambda c: c.get("index", 0))
            out[model][i] = [c["message"]["content"] or "" for c in choices]

        await asyncio.gather(*(one(m, i) for m in models for i in range(len(prompts))))
    return out


def _store_votes(store: Store, votes: list[dict], *, engine: str, dataset: str) -> int:
    """Each verdict as an arena battle + vote by the user 'synthetic-judge' (kind synthetic): db.arena turns the
    vote into a two-answer ranking with source 'arena', so the verdicts flow back into pairs like people's."""
    from db import arena

    judge_user = _synthetic_user(store, "synthetic-judge", dataset)
    for v in votes:
        messages = [{"role": "user", "content": v["prompt"]}]
        battle = arena.create_battle(
            store, v["model_a"], v["model_b"], created_by="preflab-loop", user_id=judge_user["id"]
        )
        turn = {
            "user": v["prompt"],
            "messages_a": messages,
            "messages_b": messages,
            "context": [],
            "a": {"text": v["text_a"], "engine": engine},
            "b": {"text": v["text_b"], "engine": engine},
        }
        arena.save_turns(store, battle, [turn], False)
        arena.record_vote(store, battle, v["winner"], user=judge_user, comment="rule-based judge (preflab loop)")
    return len(votes)


def _synthetic_user(store: Store, name: str, dataset: str) -> dict:
    """The user row `name` with kind 'synthetic' (created if missing; cannot log in: no password)."""
    from db.users import get_user

    user = get_user(store, name)
    if user is None:
        # A staged ranking that matches no prompt adds only its annotator: Store.commit_staged creates users
        # from stage_rankings with the given kind, and that is the one place the kind can be set.
        store.write_batch(
            dataset,
            Batch(
                rankings=[{"ranking_key": "none", "prompt_key": "none", "annotator": name, "user_kind": "synthetic"}]
            ),
            created_by="preflab-loop",
        )
        user = get_user(store, name)
    return user


def _register_run(store: Store, stage: str, run_dir: Path, values: dict) -> int | None:
    """Record the run in the runs table (db.runs) so the admin page lists it."""
    from db import runs

    return runs.create_run(
        store,
        stage=stage,
        run_dir=str(run_dir),
        base=values.get("base"),
        parent=values.get("adapter"),
        snapshot_id=values.get("snapshot_id"),
        config=values,
        created_by="preflab-loop",
    )


def _mark_running(store: Store, run_id: int | None, pid: int) -> None:
    if run_id is not None:
        from db import runs

        runs.mark_running(store, run_id, pid)


def _unique_model_name(store: Store, wanted: str) -> str:
    from db.models_registry import unique_name

    return unique_name(store, wanted)


def _finish_run(store: Store, run_id: int | None, result: dict) -> None:
    if run_id is None:
        return
    from db import runs

    runs.finish_run(
        store,
        run_id,
        status=result.get("status") or "failed",
        metrics=result.get("metrics"),
        error=result.get("error"),
    )


def _register_model(
    store: Store, name: str, stage: str, adapter: str, values: dict, run_id: int | None, metrics: dict | None
) -> None:
    """The adapter as a model (db.models_registry), with its lineage: parent, run, snapshot."""
    from db import models_registry

    models_registry.register_model(
        store,
        name=name,
        kind="adapter",
        base=values.get("base"),
        path=adapter,
        stage=stage,
        parent=values.get("adapter"),
        run_id=run_id,
        snapshot_id=values.get("snapshot_id"),
        metrics=metrics,
        created_by="preflab-loop",
    )


def run_loop(
    store: Store,
    cfg: LoopConfig,
    *,
    progress: Callable[[LoopState], None] | None = None,
    cancel: threading.Event | None = None,
) -> dict:
    """Run the loop (see the module docstring); returns the summary written to report.json."""
    return Loop(store, cfg, progress=progress, cancel=cancel).run()
