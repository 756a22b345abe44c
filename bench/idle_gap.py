"""How much a request costs after the machine sat idle: the same work back to back, and after a pause.

    .venv/bin/python bench/idle_gap.py [--rounds 20]

A DuckDB submit costs 4-5x more CPU when it follows an idle gap (20 annotators who think ~5 s each) than back to
back (one annotator alone), as bench/annotate.py shows. This script isolates that from PrefLab: (a) a small DuckDB
transaction like a submit (5 point reads and 5 inserts on a 1M-row table with a primary key, one commit) and (b)
one point read on that table, (c) appending a line to a file with fsync (what the journal of submits costs) and
(d) summing a 16 MB numpy array (pure memory reads), each timed back to back (the baseline) and after sleeps of
0.3 s and 1 s, with the process's page faults. A ratio far above 1 that grows with the pause, with no page faults,
means memory access itself is slow after idle on this machine (a property of the VM, not of the code).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    import duckdb
    import numpy as np

    path = Path(tempfile.mkdtemp(prefix="preflab-idle-")) / "idle.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, v VARCHAR)")
    con.execute("INSERT INTO t SELECT range, 'x' || range FROM range(1000000)")
    next_id = [2_000_000]

    def transaction() -> None:
        con.execute("BEGIN")
        for _ in range(5):
            next_id[0] += 1
            con.execute("INSERT INTO t VALUES (?, ?)", [next_id[0], "y"])
            con.execute("SELECT v FROM t WHERE id = ?", [next_id[0] - 1_500_000]).fetchall()
        con.execute("COMMIT")

    def point_read() -> None:
        con.execute("SELECT v FROM t WHERE id = ?", [next_id[0] % 1_000_000]).fetchall()

    journal = open(path.with_suffix(".journal"), "a", encoding="utf-8")  # closed below

    def append_fsync() -> None:  # what the journal of submits (db.journal) costs per request
        journal.write('{"assignment_id": 1, "ranks": {"1": 1, "2": 2, "3": 2, "4": 3}, "comment": "sí 好 🙂"}\n')
        journal.flush()
        os.fsync(journal.fileno())

    array = np.random.default_rng(0).random((2000, 2000), dtype=np.float32)
    works = {
        "duckdb transaction": transaction,
        "duckdb point read": point_read,
        "append + fsync": append_fsync,
        "numpy sum of 16 MB": lambda: float(array.sum()),
    }
    print(f"cores {os.cpu_count()}  load {os.getloadavg()[0]:.2f}  rounds {args.rounds}")
    for name, work in works.items():
        base = None
        for gap in (0.0, 0.3, 1.0):
            times, faults = [], 0
            for _ in range(args.rounds):
                time.sleep(gap)
                before = resource.getrusage(resource.RUSAGE_SELF)
                t0 = time.perf_counter()
                work()
                times.append((time.perf_counter() - t0) * 1e3)
                after = resource.getrusage(resource.RUSAGE_SELF)
                faults += (after.ru_minflt - before.ru_minflt) + (after.ru_majflt - before.ru_majflt)
            median = statistics.median(times)
            base = base or median
            print(
                f"{name:20s} after {gap:.1f} s idle: median {median:7.2f} ms  ({median / base:5.1f}x back to back)"
                f"  page faults {faults}"
            )
    con.close()
    journal.close()


if __name__ == "__main__":
    main()
