"""Rankings -> pairs benchmark: PrefLab (import `ranked` + export `trl`) against a pure-Python pipeline.

    python bench/pairs.py                 # N = 100,000 rankings of K = 4
    python bench/pairs.py --n 1000000     # the target: >= 5x faster than the baseline, peak memory < 2 GiB

Both sides read the same generated JSON Lines file and write TRL's {"prompt", "chosen", "rejected"} JSONL
(every pair of a ranking whose ranks differ; ties dropped). Each side runs in its own subprocess so its
peak memory (ru_maxrss) is its own. PrefLab's time covers a fresh database, `import --format ranked`
(db.importers.import_file, which takes the DuckDB path for a file this big), pair derivation, and
`export --format trl` (db.export.export). The baseline is what one would write without PrefLab: json +
itertools, line by line.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORDS = (
    "the model answer explains why water boils at lower temperatures on mountains "
    "el modelo responde con una explicación clara y un ejemplo práctico sobre la fotosíntesis "
    "模型 回答 了 这个 问题 并 给出 了 一个 简单 的 例子 关于 天气 和 气候 "
    "la réponse est courte mais correcte 🙂 🚀 ✅ 🤔"
).split()


def generate(path: Path, n: int, k: int, seed: int = 0) -> None:
    """N rankings of K answers (~50-200 characters each, several languages, 5% with a tie)."""
    rng = random.Random(seed)

    def sentence(lo: int, hi: int) -> str:
        out, size = [], rng.randint(lo, hi)
        while sum(len(w) + 1 for w in out) < size:
            out.append(rng.choice(WORDS))
        return " ".join(out)

    # a pool of sentences, made unique per row by its numbers: generating stays fast at N = 1,000,000
    prompts = [sentence(30, 120) for _ in range(2000)]
    answers = [sentence(50, 190) for _ in range(5000)]
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            ranks = list(range(1, k + 1))
            rng.shuffle(ranks)
            if rng.random() < 0.05:
                ranks[ranks.index(k)] = k - 1  # a tie between the two worst
            row = {
                "prompt": f"{rng.choice(prompts)} #{i}?",
                "responses": [f"{rng.choice(answers)} ({i}.{j})" for j in range(k)],
                "ranks": ranks,
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def run_preflab(src: Path, out: Path, db: Path, memory_limit: str | None) -> dict:
    sys.path.insert(0, str(ROOT))
    from db.export import export
    from db.importers import import_file
    from db.store import Store

    t0 = time.perf_counter()
    store = Store.open(db)
    if memory_limit:  # DuckDB's own default is 80% of RAM; below the limit it spills to disk
        store.set_memory_limit(memory_limit)
    report = import_file(store, src, fmt="ranked", dataset="bench")
    t1 = time.perf_counter()
    result = export(store, "trl", out, dataset="bench")
    store.close()
    t2 = time.perf_counter()
    return {
        "seconds": t2 - t0,
        "import_s": t1 - t0,
        "export_s": t2 - t1,
        "engine": report.engine,
        "pairs": result.counts["pairs"],
        "stored_pairs": report.added.pairs,
    }


def run_baseline(src: Path, out: Path) -> dict:
    t0 = time.perf_counter()
    pairs = 0
    with open(src, encoding="utf-8") as f, open(out, "w", encoding="utf-8") as w:
        for line in f:
            r = json.loads(line)
            ranked = sorted(zip(r["ranks"], r["responses"], strict=True))
            for (ra, a), (rb, b) in combinations(ranked, 2):
                if ra != rb:
                    w.write(json.dumps({"prompt": r["prompt"], "chosen": a, "rejected": b}, ensure_ascii=False) + "\n")
                    pairs += 1
    return {"seconds": time.perf_counter() - t0, "pairs": pairs}


def worker(args) -> None:
    src, out = Path(args.src), Path(args.out)
    result = (
        run_preflab(src, out, Path(args.db), args.duckdb_memory)
        if args.worker == "preflab"
        else run_baseline(src, out)
    )
    result["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps(result))


def child(kind: str, src: Path, work: Path, memory_limit: str) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        "--src",
        str(src),
        "--out",
        str(work / f"{kind}.jsonl"),
        "--db",
        str(work / "bench.duckdb"),
        "--duckdb-memory",
        memory_limit,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the {kind} run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="rankings (default 100,000; the target is 1,000,000)")
    ap.add_argument("--k", type=int, default=4, help="answers per ranking")
    ap.add_argument("--workdir", help="folder for the data, database and outputs (default: a temporary one)")
    ap.add_argument(
        "--duckdb-memory",
        default="1GB",
        help="DuckDB memory_limit for PrefLab's process (default 1GB, so the whole process stays < 2 GiB)",
    )
    ap.add_argument("--worker", choices=["preflab", "baseline"], help=argparse.SUPPRESS)
    ap.add_argument("--src", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        # --workdir keeps the generated file for the next run (generating 1,000,000 rankings takes minutes)
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        (work / "bench.duckdb").unlink(missing_ok=True)
        (work / "bench.duckdb.wal").unlink(missing_ok=True)
        src = work / f"rankings_n{args.n}_k{args.k}.jsonl"
        if not src.exists():
            t = time.perf_counter()
            generate(src, args.n, args.k)
            print(f"generated {args.n:,} rankings of K={args.k} in {time.perf_counter() - t:.1f}s", flush=True)
        print(f"data: {src} ({src.stat().st_size / 2**20:,.0f} MiB)", flush=True)
        pref = child("preflab", src, work, args.duckdb_memory)
        print(
            f"PrefLab ({pref['engine']} import + trl export): {pref['seconds']:8.1f}s  peak "
            f"{pref['peak_mib']:7.0f} MiB  (import {pref['import_s']:.1f}s, export {pref['export_s']:.1f}s)",
            flush=True,
        )
        base = child("baseline", src, work, args.duckdb_memory)
        print(f"baseline (json + itertools): {base['seconds']:8.1f}s  peak {base['peak_mib']:7.0f} MiB", flush=True)
        if base["pairs"] != pref["pairs"]:
            raise SystemExit(f"pair counts differ: baseline {base['pairs']}, PrefLab {pref['pairs']}")
        print(f"pairs: {pref['pairs']:,} (ties dropped; {pref['stored_pairs']:,} stored incl. ties)")
        print(
            f"speed-up: {base['seconds'] / pref['seconds']:.2f}x (target >= 5x at N=1,000,000); "
            f"PrefLab peak memory {pref['peak_mib'] / 1024:.2f} GiB (target < 2 GiB)"
        )


if __name__ == "__main__":
    main()
