"""Rankings -> pairs benchmark: PrefLab (import `ranked` + export `trl`) against two baselines.

    python bench/pairs.py                   # N = 100,000 rankings of K = 4
    python bench/pairs.py --n 300000 --stages   # also where PrefLab's time goes, stage by stage
    python bench/pairs.py --n 1000000       # the target: within 5x of the DuckDB-only script, peak < 2 GiB

All three read the same generated JSON Lines file and write TRL's {"prompt", "chosen", "rejected"} JSONL
(every pair of a ranking whose ranks differ; ties dropped). Each runs in its own subprocess so its peak
memory (ru_maxrss) is its own. PrefLab's time covers a fresh database, `import --format ranked`
(db.importers.import_file, which takes the DuckDB path for a file this big), pair derivation, and
`export --format trl` (db.export.export). The baselines are what one would write without PrefLab: json +
itertools, line by line ("python"), and one DuckDB statement, read_json -> pairs in SQL -> COPY, that
stores nothing ("duckdb").
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
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

    stages: dict[str, float] = {}

    class Stages(logging.Handler):  # db.staging.timed logs "stage <name> <seconds>s" at DEBUG
        def emit(self, record):
            m = re.fullmatch(r"stage (.+) ([0-9.]+)s", record.getMessage())
            if m:
                stages[m[1]] = stages.get(m[1], 0.0) + float(m[2])

    for name in ("db.staging", "db.importers.fastimport"):
        logging.getLogger(name).addHandler(Stages())
        logging.getLogger(name).setLevel(logging.DEBUG)
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
        "stages": stages,
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


# the DuckDB-only baseline: what a skilled user writes without PrefLab (ties dropped, as the trl export does)
BASELINE_SQL = """
    COPY (
        WITH r AS (SELECT row_number() OVER () AS rn, prompt, responses, ranks
                   FROM read_json(?, format = 'newline_delimited',
                                  columns = {{prompt: 'VARCHAR', responses: 'VARCHAR[]', ranks: 'BIGINT[]'}})),
             a AS (SELECT rn, prompt, unnest(responses) AS text, unnest(ranks) AS rank FROM r)
        SELECT x.prompt, x.text AS chosen, y.text AS rejected
        FROM a x JOIN a y ON x.rn = y.rn AND x.rank < y.rank
    ) TO {out} (FORMAT json)"""


def run_duckdb(src: Path, out: Path) -> dict:
    """read_json -> every two answers of a ranking, the better rank chosen, ties dropped -> COPY; nothing stored."""
    import duckdb

    t0 = time.perf_counter()
    con = duckdb.connect()
    con.execute(BASELINE_SQL.format(out="'" + str(out).replace("'", "''") + "'"), [str(src)])
    con.close()
    seconds = time.perf_counter() - t0
    with open(out, "rb") as f:
        pairs = sum(1 for _ in f)
    return {"seconds": seconds, "pairs": pairs}


def worker(args) -> None:
    src, out = Path(args.src), Path(args.out)
    if args.worker == "preflab":
        result = run_preflab(src, out, Path(args.db), args.duckdb_memory)
    elif args.worker == "duckdb":
        result = run_duckdb(src, out)
    else:
        result = run_baseline(src, out)
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
    ap.add_argument("--stages", action="store_true", help="print where PrefLab's time goes, stage by stage")
    ap.add_argument("--worker", choices=["preflab", "duckdb", "baseline"], help=argparse.SUPPRESS)
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
        duck = child("duckdb", src, work, args.duckdb_memory)
        base = child("baseline", src, work, args.duckdb_memory)
        for name, r in (("DuckDB-only script", duck), ("PrefLab", pref)):
            if r["pairs"] != base["pairs"]:
                raise SystemExit(f"pair counts differ: python {base['pairs']}, {name} {r['pairs']}")
        print(f"pairs: {pref['pairs']:,} (ties dropped; {pref['stored_pairs']:,} stored incl. ties)")
        print(f"{'':34}{'time':>9}  {'peak':>9}  {'PrefLab / it':>12}")
        for name, r in (
            ("(b) python (json + itertools)", base),
            ("(c) DuckDB-only script", duck),
            (f"(a) PrefLab ({pref['engine']} import + trl)", pref),
        ):
            print(
                f"{name:34}{r['seconds']:8.1f}s  {r['peak_mib']:5.0f} MiB  {pref['seconds'] / r['seconds']:11.2f}x",
                flush=True,
            )
        print(f"PrefLab: import {pref['import_s']:.1f}s, export {pref['export_s']:.1f}s")
        print(
            f"target at N=1,000,000: PrefLab within 5x of the DuckDB-only script (now "
            f"{pref['seconds'] / duck['seconds']:.2f}x), peak memory < 2 GiB (now {pref['peak_mib'] / 1024:.2f} GiB)"
        )
        if args.stages:
            print("PrefLab stages (seconds, summed over commit chunks):")
            stages = dict(pref["stages"])
            write = stages.pop("write (classify + commit + COMMIT)", 0.0)
            inner = sum(v for k, v in stages.items() if k == "classify" or k.startswith("commit: "))
            stages["COMMIT (writing to disk)"] = write - inner
            stages["export"] = pref["export_s"]
            stages["other (open, migrations, totals)"] = pref["seconds"] - sum(stages.values())
            for name, secs in stages.items():
                print(f"  {name:36}{secs:8.2f}s  {100 * secs / pref['seconds']:5.1f}%")


if __name__ == "__main__":
    main()
