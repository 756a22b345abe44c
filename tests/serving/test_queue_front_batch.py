"""The queue writer's group commit (serving.api.queue_front, queue.apply_batch): many jobs in one transaction, a
failing one reported on its own, every acknowledged submit stored exactly once."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from pathlib import Path

from db import gold, quality, queue
from db.journal import path_of as journal_path
from db.store import Store
from serving.api.queue_front import QueueFront
from tests.support.data import add_user, seed


def _users(store, names) -> list[dict]:
    return [
        {"id": add_user(store, name, password=None), "name": name, "role": "annotator"}  # (no slow password hash)
        for name in names
    ]


def _ranks(lease) -> dict:
    return {str(g): 1 + i for i, g in enumerate(lease["answer_order"])}


def _queue_open(store, dataset_id) -> list[tuple]:
    return store.con.execute(
        "SELECT prompt_id, done FROM queue_open WHERE dataset_id = ? ORDER BY prompt_id", [dataset_id]
    ).fetchall()


def test_a_failing_step_leaves_the_others_of_its_batch_stored(store):
    seed(store, prompts=4, answers=2, k=2)
    ann, bob = _users(store, ["ann", "bob"])
    a, _ = queue.next_item(store, ann["id"], dataset="d")
    b, _ = queue.next_item(store, bob["id"], dataset="d")
    later = datetime.now() + timedelta(hours=1)
    results = queue.apply_batch(
        store,
        [
            ("renew", {"assignment_id": a["assignment_id"], "expires_at": later}),
            ("release", {"user_id": ann["id"], "assignment_id": b["assignment_id"]}),  # not hers: NotFoundError
            ("release", {"user_id": bob["id"], "assignment_id": b["assignment_id"]}),
        ],
    )
    assert [r for r, _ in results] == [True, None, True]
    assert results[0][1] is None and results[2][1] is None
    assert type(results[1][1]).__name__ == "NotFoundError" and str(b["assignment_id"]) in str(results[1][1])
    rows = dict(store.con.execute("SELECT id, status FROM assignments").fetchall())
    assert rows == {a["assignment_id"]: "leased", b["assignment_id"]: "released"}
    assert store.scalar("SELECT expires_at FROM assignments WHERE id = ?", [a["assignment_id"]]) == later


def test_a_submit_the_database_refuses_mid_batch_is_kept_and_the_others_are_stored(db_path):
    store = Store.open(db_path)
    prompts = seed(store, prompts=8, answers=3, k=2)
    people = _users(store, ["ann", "bob", "cid", "dan"])
    front = QueueFront(store)
    leases = {}
    for user in people:
        leases[user["name"]], _ = queue.next_item(store, user["id"], dataset="d")
        front.handed_out(leases[user["name"]], user)
    front.drain()  # everyone's item ahead is leased
    cid = people[2]
    with store._lock:  # the writer waits: the submits queue up behind it and go in one or two batches
        acked = {}
        for user in people:
            lease = leases[user["name"]]
            acked[user["name"]] = front.submit(
                user, lease["assignment_id"], {"status": "submitted", "ranks": _ranks(lease), "comment": "¡sí! 好 ✓"}
            )
        # cid's ranking of that prompt arrives behind the front's back (an import): her submit's INSERT fails on
        # UNIQUE (prompt, user), which aborts DuckDB's transaction
        store.con.execute(
            "INSERT INTO rankings (id, prompt_id, user_id, status, source, created_by) "
            "VALUES (nextval('seq_rankings'), ?, ?, 'skipped', 'human', 'import')",
            [leases["cid"]["prompt_id"], cid["id"]],
        )
    front.drain()
    assert all(acked.values())
    stored = dict(store.con.execute("SELECT id, comment FROM rankings WHERE created_by <> 'import'").fetchall())
    assert stored == {acked[n][0]: "¡sí! 好 ✓" for n in ("ann", "bob", "dan")}
    failed = [json.loads(x) for x in open(f"{journal_path(store)}.failed.jsonl", encoding="utf-8")]
    assert [f["submit"]["ranking_id"] for f in failed] == [acked["cid"][0]]
    assert "ConflictError" in failed[0]["reason"] and failed[0]["submit"]["fields"]["comment"] == "¡sí! 好 ✓"
    stats = front.stats()
    assert stats["writer_batch_max"] >= 3 and stats["writer_behind"] == 0
    # the others got their next item ahead in the same batch: their next submit is answered from memory too
    for user in (people[0], people[1], people[3]):
        nxt = acked[user["name"]][1]
        again = front.submit(user, nxt["assignment_id"], {"status": "submitted", "ranks": _ranks(nxt)})
        assert again is not None and again[0] not in stored
    # cid's lease handed out with the refused submit was forgotten: her next submit goes to DuckDB's checks
    nxt = acked["cid"][1]
    assert front.submit(cid, nxt["assignment_id"], {"status": "submitted", "ranks": _ranks(nxt)}) is None
    front.drain()
    did = store.dataset_id("d")
    assert len(prompts) == 8 and _queue_open(store, did) == _rebuilt(store, did)
    front.close()
    store.close()


def _rebuilt(store, dataset_id) -> list[tuple]:
    queue.invalidate(store, dataset_id)
    queue.sync(store, dataset_id)
    return _queue_open(store, dataset_id)


def test_many_concurrent_submits_all_land_exactly_once(db_path):
    store = Store.open(db_path)
    seed(store, prompts=60, answers=2, k=2)
    people = _users(store, [f"ann{i:02d}" for i in range(12)] + ["josé", "李"])
    front = QueueFront(store)
    store.set_gate(front.drain)  # as the server does: anything through the Store waits for the writer
    acked: list[tuple[int, int, int]] = []  # (ranking id, user id, prompt id)
    errors: list[BaseException] = []
    mutex = threading.Lock()

    def annotate(user: dict) -> None:
        try:
            lease, _ = queue.next_item(store, user["id"], dataset="d")
            front.handed_out(lease, user)
            for _ in range(5):
                if lease is None:
                    return
                fields = {"status": "submitted", "ranks": _ranks(lease)}
                fast = front.submit(user, lease["assignment_id"], fields)
                if fast is not None:
                    rid, nxt, _ = fast
                else:  # what the API does when the front cannot answer
                    front.forget(lease["assignment_id"], user["id"])
                    rid, nxt, _ = queue.submit_and_next(store, user["id"], lease["assignment_id"], **fields)
                    front.handed_out(nxt, user)
                with mutex:
                    acked.append((rid, user["id"], lease["prompt_id"]))
                lease = nxt
        except BaseException as e:  # reported by the test
            errors.append(e)

    threads = [threading.Thread(target=annotate, args=(u,)) for u in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    front.drain()
    assert errors == []
    assert len(acked) == 5 * len(people)
    rows = store.con.execute("SELECT id, user_id, prompt_id FROM rankings ORDER BY id").fetchall()
    assert sorted(rows) == sorted(acked)  # every acknowledged submit, once, as acknowledged
    per_prompt = store.con.execute("SELECT max(n) FROM (SELECT count(*) AS n FROM rankings GROUP BY prompt_id)")
    assert per_prompt.fetchall()[0][0] <= 2  # k
    did = store.dataset_id("d")
    assert _queue_open(store, did) == _rebuilt(store, did)
    assert front.stats()["writer_batch_max"] >= 1 and not Path(f"{journal_path(store)}.failed.jsonl").exists()
    store.set_gate(None)
    front.close()
    assert journal_path(store).read_bytes() == b""
    store.close()


_TABLES = {
    "rankings": "SELECT id, prompt_id, user_id, status, comment, created_at FROM rankings",
    "items": "SELECT ranking_id, generation_id, rank, position FROM ranking_items",
    "pairs": "SELECT ranking_id, prompt_id, chosen_id, rejected_id, margin, is_tie, source FROM pairs",
    "assignments": "SELECT id, prompt_id, user_id, status, answer_order, expires_at FROM assignments",
    "queue_open": "SELECT prompt_id, done FROM queue_open",
    "queue_sync": "SELECT dataset_id, generation_mark, ranking_mark, k FROM queue_sync",
}


def _run_rounds(db_path: Path, t0: datetime, grouped: bool) -> tuple[list, dict]:
    """Two rounds of the writer's work for five people (a submit and the next item ahead each; a replayed submit; a
    paused annotator; a gold prompt) either as one apply_batch per round or one transaction per step."""
    store = Store.open(db_path)
    prompts = seed(store, prompts=12, answers=3, k=2)
    did = store.dataset_id("d")
    gids = store.con.execute("SELECT list(id) FROM generations WHERE prompt_id = ?", [prompts[-1]]).fetchall()[0][0]
    gold.mark_gold(store, prompts[-1], {g: i + 1 for i, g in enumerate(gids)}, by="test")
    gold.set_gold_rate(store, did, 0.5)  # a gold item in every 2: some of the next items are gold
    # eve goes first: her refused step makes the batch run again, and DuckDB's sequences do not roll back, so the
    # ids would differ from one transaction per step had steps before hers taken any
    people = _users(store, ["eve", "ann", "bob", "cid", "dan"])
    held = {}
    for user in people:
        lease, _ = queue.next_item(store, user["id"], dataset_id=did, now=t0)
        ahead, _, rid = queue.lease_ahead(store, did, user["id"], lease["assignment_id"], now=t0)
        held[user["id"]] = (lease, ahead, rid)
    quality.set_control(store, did, "eve", paused=True, by="test")
    results = []
    for n in range(2):
        now = t0 + timedelta(seconds=10 * (n + 1))
        steps = []
        for user in people:
            lease, ahead, rid = held[user["id"]]
            extend = (ahead["assignment_id"], now + timedelta(seconds=600))
            fields = {"status": "submitted", "ranks": _ranks(lease), "comment": f"round {n} ✓"}
            args = {"user_id": user["id"], "assignment_id": lease["assignment_id"], "ranking_id": rid, "now": now}
            steps.append(("reserved", {**args, "created_by": user["name"], "fields": fields, "extend": extend}))
            if user["name"] == "bob":  # the journal replayed: stored once
                steps.append(steps[-1])
            ahead_args = {"dataset_id": did, "user_id": user["id"], "current": ahead["assignment_id"], "now": now}
            steps.append(("ahead", {**ahead_args, "lease_s": 600, "created_by": user["name"]}))
        if grouped:
            out = queue.apply_batch(store, steps)
        else:
            out = [queue.apply_batch(store, [step])[0] for step in steps]
        results.append([(r, type(e).__name__ if e else None) for r, e in out])
        for user, (r, e) in zip(people, [o for s, o in zip(steps, out, strict=True) if s[0] == "ahead"], strict=True):
            if e is None and r[0] is not None:
                held[user["id"]] = (held[user["id"]][1], r[0], r[1])
    tables = {name: sorted(store.con.execute(sql).fetchall()) for name, sql in _TABLES.items()}
    store.close()
    return results, tables


def test_a_batch_stores_what_one_transaction_per_step_stores(tmp_path):
    """The batch reads its dataset's state once, writes items, pairs and renewals at its end: the same rows."""
    t0 = datetime.now().replace(microsecond=0)
    grouped = _run_rounds(tmp_path / "grouped.duckdb", t0, grouped=True)
    alone = _run_rounds(tmp_path / "alone.duckdb", t0, grouped=False)
    assert grouped == alone
    results, tables = grouped
    submits = [r for r, _ in results[0] if r in ((True, True), (False, False))]
    # bob's replayed submit stores nothing; eve's submit is stored, her item ahead is refused (paused)
    assert submits == [(True, True)] * 3 + [(False, False)] + [(True, True)] * 2
    assert [e for _, e in results[0]] == [None, "ForbiddenError"] + [None] * 9
    assert len(tables["rankings"]) == 9 and len(tables["pairs"]) == 9 * 3 and len(tables["items"]) == 9 * 3
