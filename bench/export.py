"""Export benchmark: `db.export.export(store, "trl", ...)` against fetching the same pairs into Python.

    python bench/export.py              # N = 100,000 rankings of K = 4 (600,000 pairs)
    python bench/export.py --n 1000000  # 6,000,000 pairs

Both sides write the same rows in the same order ({"prompt", "chosen", "rejected"}, UTF-8 as characters),
from the same database, each in its own subprocess so its peak memory (ru_maxrss) is its own. The baseline
is what one writes without PrefLab's exporter: one SQL join, rows fetched in batches, json.dumps per row.
The database is built straight in SQL (not through the importer: bench/pairs.py measures that).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BASELINE_SQL = """SELECT pr.messages->>'$[0].content', gc.text, gr.text FROM pairs p
                  JOIN prompts pr ON pr.id = p.prompt_id JOIN generations gc ON gc.id = p.chosen_id
                  JOIN generations gr ON gr.id = p.rejected_id WHERE NOT p.is_tie
                  ORDER BY p.prompt_id, p.chosen_id, p.rejected_id"""


def build(db: Path, n: int) -> None:
    from db.bench_data import generate_ranked
    from db.store import Store

    store = Store.open(db)
    generate_ranked(store, n)
    store.close()


def run_side(side: str, db: Path, out: Path) -> dict:
    if side == "preflab":
        from db.export import export
        from db.store import Store

        store = Store.open(db)
        t0 = time.perf_counter()
        rows = export(store, "trl", out).counts["pairs"]
    else:  # plain DuckDB on its own connection, not the Store: what one writes without PrefLab
        import duckdb

        con = duckdb.connect(str(db))
        t0 = time.perf_counter()
        rows = 0
        with out.open("w", encoding="utf-8") as f:
            cur = con.execute(BASELINE_SQL)
            while batch := cur.fetchmany(10_000):
                for prompt, chosen, rejected in batch:
                    f.write(json.dumps({"prompt": prompt, "chosen": chosen, "rejected": rejected}, ensure_ascii=False))
                    f.write("\n")
                rows += len(batch)
    seconds = time.perf_counter() - t0
    return {"rows": rows, "seconds": seconds, "peak_mib": peak_mib()}


def peak_mib() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork + exec,
    so a child would report its parent's peak (the parent built the database)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="rankings of K=4 answers (6 pairs each)")
    ap.add_argument("--side", choices=["preflab", "baseline"], help=argparse.SUPPRESS)
    ap.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:  # child process
        print(json.dumps(run_side(args.side, args.db, args.out)))
        return
    with tempfile.TemporaryDirectory(prefix="preflab-bench-export-") as tmp:
        db = Path(tmp) / "bench.duckdb"
        t0 = time.perf_counter()
        build(db, args.n)
        print(f"built {args.n:,} rankings of K=4 in {time.perf_counter() - t0:.1f}s")
        res = {}
        for side in ("baseline", "preflab"):
            out = Path(tmp) / f"{side}.jsonl"
            cmd = [sys.executable, __file__, "--side", side, "--db", str(db), "--out", str(out)]
            res[side] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            print(
                f"{side:9s} {res[side]['rows']:>10,} pairs {res[side]['seconds']:8.1f}s  peak "
                f"{res[side]['peak_mib']:7.0f} MiB"
            )
        same = (Path(tmp) / "baseline.jsonl").stat().st_size > 0 and all(
            json.loads(a) == json.loads(b)
            for a, b in zip(
                open(Path(tmp) / "baseline.jsonl", encoding="utf-8"),
                open(Path(tmp) / "preflab.jsonl", encoding="utf-8"),
                strict=True,
            )
        )
        print(f"same rows in the same order: {same}")
        print(f"speed-up: {res['baseline']['seconds'] / res['preflab']['seconds']:.2f}x")


if __name__ == "__main__":
    main()
