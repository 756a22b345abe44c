"""Annotation latency benchmark: "submit a ranking + get the next item" with 20 annotators, 1k vs 1M answers.

    python bench/annotate.py                      # 1,000 generations, then 1,000,000 (250,000 prompts x 4)
    python bench/annotate.py --big 100000         # a smaller "big" database for a quick look
    python bench/annotate.py --small 0 --big 100000 --annotators 100 --think 2 --submits 10   # one point of a knee

For each size: a database is built in SQL through the Store's staging path (prompts and answers generated
with range()), 20 annotators are added, `preflab server` runs in a subprocess, and 20 threads each sign in
and loop POST /api/rankings, whose response carries the next item (what the UI does). Latency is taken
server-side from the X-Process-Time header (the app's own time, without client and socket cost), so the
number measures the server, not this script (it does include waiting for the Store lock and for a CPU).
Prints p50/p95 per size, the submits/s overall and while everyone is at work ("steady": the middle 80% of the
submits over their span; the knee is the steady rate where p95 crosses 100 ms), the share of submits the server
answered from memory once journaled (header X-PrefLab-Submit, serving/api/queue_front.py; the rest went to
DuckDB), the writer's transactions (jobs per group commit), the growth ratio 1M/1k, and the load average around
each measurement, because on a shared machine the latency follows the load more than the data size.
Targets (issue 4): p95 <= 100 ms, and at most 2x growth from 1k to 1M.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from db import queue, users  # noqa: E402
from db.bench_data import generate_answers  # noqa: E402
from db.store import Store  # noqa: E402
from serving.engines.launcher import free_port  # noqa: E402

PASSWORD = "bench password"
ANSWERS = 4


def build(db: Path, generations: int, annotators: int, k: int) -> float:
    """A dataset of generations/4 prompts x 4 answers, made in SQL; returns seconds taken."""
    t0 = time.perf_counter()
    prompts = generations // ANSWERS
    store = Store.open(db)
    generate_answers(store, "bench", prompts=prompts, answers=ANSWERS)
    queue.update_dataset(store, "bench", k=k)
    from serving.api.security import hash_password

    pw = hash_password(PASSWORD)
    for i in range(annotators):
        users.add_user(store, f"ann{i:02d}", role="annotator", password_hash=pw, created_by="bench")
    users.add_user(store, "bench-admin", role="admin", password_hash=pw, created_by="bench")  # reads /api/health
    n = store.counts()["generations"]
    assert n == prompts * ANSWERS, n
    store.close()
    return time.perf_counter() - t0


def serve(db: Path, home: Path, port: int) -> subprocess.Popen:
    # this checkout's code, whichever one is installed: a baseline checkout runs beside the current one
    env = {**os.environ, "PREFLAB_HOME": str(home), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "serving.cli", "--db", str(db), "server", "--port", str(port)]
    with open(home / "server.log", "wb") as log:  # shown if a submit fails
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def annotator(url: str, name: str, submits: int, out: list, errors: list, think_s: float = 0.0) -> None:
    rng = random.Random(name)
    with httpx.Client(base_url=url, timeout=300) as c:
        token = c.post("/api/auth/login", json={"name": name, "password": PASSWORD}).json()["token"]
        c.headers["Authorization"] = f"Bearer {token}"
        nxt = c.get("/api/queue/next", params={"dataset": "bench"}).json()
        for _ in range(submits):
            item = nxt["item"]
            if item is None:
                break
            ranks = {str(a["id"]): i + 1 for i, a in enumerate(item["answers"])}
            if think_s:  # reading and ranking; people take far longer, this keeps the 20 overlapping
                time.sleep(rng.uniform(0.5, 1.5) * think_s)
            try:
                r = c.post(
                    "/api/rankings",
                    json={"assignment_id": item["assignment_id"], "ranks": ranks, "time_on_task_ms": 1000},
                )
            except httpx.TransportError as e:  # counted, so a run on an overloaded machine says so
                errors.append(f"{type(e).__name__}: {e}")
                break
            if r.status_code != 201:
                errors.append(r.text)
                break
            journaled = r.headers.get("X-PrefLab-Submit") == "journal"
            out.append((float(r.headers["X-Process-Time"]), journaled, time.perf_counter()))
            nxt = r.json()["next"]


def _pcts(times: list[tuple]) -> tuple[float, float]:
    q = statistics.quantiles([t[0] for t in times], n=100)
    return q[49], q[94]


def _journaled(times: list[tuple]) -> float:
    """The share of submits answered from the server's memory once journaled (serving.api.queue_front)."""
    return sum(t[1] for t in times) / len(times)


def _sustained(times: list[tuple]) -> float:
    """Submits/s while everyone is at work: those completed between the 10th and the 90th percentile of the
    completion times, over that span (the sign-ins before and the stragglers after left out)."""
    done = sorted(t[2] for t in times)
    lo, hi = len(done) // 10, len(done) * 9 // 10
    return (hi - lo) / (done[hi] - done[lo]) if hi > lo and done[hi] > done[lo] else float("nan")


def measure(
    generations: int, *, annotators: int, submits: int, k: int, think_s: float, solo: int, workdir: Path
) -> dict:
    """Two phases on one server: one annotator alone (the cost of a request, no queueing), then all of them."""
    db, home = workdir / f"bench-{generations}.duckdb", workdir / f"home-{generations}"
    home.mkdir()
    build_s = build(db, generations, annotators + 1, k)
    port = free_port()
    proc = serve(db, home, port)
    url = f"http://127.0.0.1:{port}"
    solo_times: list[tuple] = []
    times: list[tuple] = []
    errors: list[str] = []
    load = [os.getloadavg()[0]]  # the machine is shared: say how busy it was, since latency follows it
    try:
        annotator(url, f"ann{annotators:02d}", 3, [], errors)  # warm-up: imports, first queue sync, caches
        annotator(url, f"ann{annotators:02d}", solo, solo_times, errors)
        t0 = time.perf_counter()
        threads = [
            threading.Thread(target=annotator, args=(url, f"ann{i:02d}", submits, times, errors, think_s))
            for i in range(annotators)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        load.append(os.getloadavg()[0])
        login = {"name": "bench-admin", "password": PASSWORD}
        admin = {"Authorization": f"Bearer {httpx.post(f'{url}/api/auth/login', json=login).json()['token']}"}
        writer = httpx.get(f"{url}/api/health", headers=admin, timeout=30).json()["queue_writer"]
    finally:
        proc.terminate()
        proc.wait(60)
    if errors:
        server_log = (home / "server.log").read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(
            f"{len(errors)} failed submits, first: {errors[0]}; exit code {proc.returncode}; server log:\n{server_log}"
        )
    (s50, s95), (p50, p95) = _pcts(solo_times), _pcts(times)
    return {
        "generations": generations,
        "build_s": build_s,
        "solo_p50": s50,
        "solo_p95": s95,
        "solo_journaled": _journaled(solo_times),
        "journaled": _journaled(times),
        "requests": len(times),
        "p50_ms": p50,
        "p95_ms": p95,
        "throughput_per_s": len(times) / wall,
        "sustained_per_s": _sustained(times),
        "load": load,
        "writer": writer,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=1_000, help="generations in the baseline database (0: none)")
    ap.add_argument("--big", type=int, default=1_000_000, help="generations in the large database")
    ap.add_argument("--annotators", type=int, default=20)
    ap.add_argument("--submits", type=int, default=10, help="rankings per annotator (1k answers hold 500 at k=2)")
    ap.add_argument("--solo", type=int, default=40, help="rankings of the lone annotator (phase 1)")
    ap.add_argument("--k", type=int, default=2, help="annotators per prompt")
    ap.add_argument(
        "--think",
        type=float,
        default=5.0,
        help="mean seconds an annotator spends per item (people take 20-60; 0: a saturation test)",
    )
    args = ap.parse_args()
    os.environ.setdefault("PREFLAB_KDF_MEMORY_KIB", "8192")  # signing 20 people in is not what we measure
    with tempfile.TemporaryDirectory(prefix="preflab-bench-") as tmp:
        rows = [
            measure(
                n,
                annotators=args.annotators,
                submits=args.submits,
                k=args.k,
                think_s=args.think,
                solo=args.solo,
                workdir=Path(tmp),
            )
            for n in (args.small, args.big)
            if n
        ]
    print(f"server-side ms of POST /api/rankings (submit + next item), from X-Process-Time; k={args.k}")
    print(
        f"{'generations':>12} {'build s':>8} | {'1 annotator':>11} {'p50':>6} {'p95':>6} | "
        f"{args.annotators} annotators, think ~{args.think:g} s: {'n':>4} {'p50':>6} {'p95':>6} {'req/s':>6} "
        f"{'steady':>6} | "
        "journaled alone / 20 | load avg (1 min) before / after"
    )
    for r in rows:
        print(
            f"{r['generations']:>12,} {r['build_s']:>8.1f} | {args.solo:>11} {r['solo_p50']:>6.1f} "
            f"{r['solo_p95']:>6.1f} | {'':>{len(str(args.annotators)) + 28}}{r['requests']:>4} {r['p50_ms']:>6.1f} "
            f"{r['p95_ms']:>6.1f} {r['throughput_per_s']:>6.1f} {r['sustained_per_s']:>6.1f} | "
            f"{r['solo_journaled']:>6.0%} / {r['journaled']:.0%} "
            f"| {r['load'][0]:.2f} / {r['load'][-1]:.2f}"
        )
    for r in rows:
        w = r["writer"]
        print(
            f"{r['generations']:>12,}: the writer behind the journaled submits (storing one, leasing the next item"
            f" ahead), {w['writer_jobs']} jobs; per transaction (last 1000): p50 {w['writer_p50_ms']} ms,"
            f" p95 {w['writer_p95_ms']} ms, jobs mean {w.get('writer_batch_mean')} max {w.get('writer_batch_max')}"
        )
    if len(rows) < 2:
        return
    small, big = rows
    print(
        f"growth {args.big:,} vs {args.small:,}: p95 alone {big['solo_p95'] / small['solo_p95']:.2f}x, "
        f"p95 with {args.annotators} annotators {big['p95_ms'] / small['p95_ms']:.2f}x (target <= 2x); "
        f"p95 at {args.big:,} with {args.annotators} annotators: {big['p95_ms']:.1f} ms (target <= 100 ms)"
    )


if __name__ == "__main__":
    main()
