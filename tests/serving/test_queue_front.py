"""The queue's front in server memory (serving.api.queue_front): submits acknowledged from the journal, written
behind."""

from __future__ import annotations

import json
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from db import queue
from db.journal import path_of as journal_path
from db.store import Store
from serving.api.app import create_app
from serving.api.queue_front import QueueFront
from tests.support.data import add_user, rank_all, seed, signed_in


def _journal(store) -> list[dict]:
    path = journal_path(store)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def _first(c, heads, dataset="d"):
    r = c.get("/api/queue/next", params={"dataset": dataset}, headers=heads)
    assert r.status_code == 200, r.text
    return r.json()


def _submit(c, heads, item, **extra):
    body = {"assignment_id": item["assignment_id"], "ranks": rank_all(item), **extra}
    return c.post("/api/rankings", json=body, headers=heads)


def _queue_open(store, dataset_id) -> list[tuple]:
    rows = store.query("SELECT prompt_id, done FROM queue_open WHERE dataset_id = ? ORDER BY prompt_id", [dataset_id])
    return [(r["prompt_id"], r["done"]) for r in rows]


def _live_leases(store, name) -> list[int]:
    return [
        r["prompt_id"]
        for r in store.query(
            "SELECT a.prompt_id FROM assignments a JOIN users u ON u.id = a.user_id WHERE u.name = ? "
            "AND a.status = 'leased' AND a.expires_at > now() ORDER BY a.id",
            [name],
        )
    ]


def _rebuilt_queue_open(store, dataset_id) -> list[tuple]:
    """queue_open as a rebuild from the rankings table makes it: what the front must keep it equal to."""
    queue.invalidate(store, dataset_id)
    queue.sync(store, dataset_id)
    return _queue_open(store, dataset_id)


@contextmanager
def _serving(store, *names: str, admins: tuple[str, ...] = ()):
    """A server over `store` with these annotators (and admins) added and signed in: (client, app, {name: headers})."""
    for name in names:
        add_user(store, name)
    for name in admins:
        add_user(store, name, role="admin")
    app = create_app(store)
    with TestClient(app) as c:
        yield c, app, {n: signed_in(c, n) for n in (*names, *admins)}


@pytest.fixture
def app_env(store):
    seed(store, prompts=6, answers=4, k=2)
    with _serving(store, "ann", "bob", "cid") as (c, app, heads):
        yield c, store, app, heads


def test_a_submit_is_journaled_answered_from_memory_and_stored_right_behind(app_env):
    c, store, app, heads = app_env
    first = _first(c, heads["ann"])["item"]
    app.state.front.drain()  # the item after it is leased ahead
    r = _submit(c, heads["ann"], first, comment="¡bien! 好 👍", time_on_task_ms=1234)
    assert r.status_code == 201, r.text
    body = r.json()
    journal = _journal(store)
    assert [j["ranking_id"] for j in journal] == [body["ranking_id"]]  # acknowledged from the journal
    assert journal[0]["fields"]["comment"] == "¡bien! 好 👍"
    nxt = body["next"]["item"]
    assert nxt["prompt"]["id"] != first["prompt"]["id"] and len(nxt["answers"]) == 4
    assert "secret-model" not in json.dumps(body)
    # any read through the Store waits for the write behind it
    row = store.query(
        "SELECT prompt_id, user_id, comment, time_on_task_ms FROM rankings WHERE id = ?", [body["ranking_id"]]
    )
    assert row and row[0]["prompt_id"] == first["prompt"]["id"] and row[0]["comment"] == "¡bien! 好 👍"
    assert store.scalar("SELECT count(*) FROM pairs WHERE ranking_id = ?", [body["ranking_id"]]) == 6
    mine = c.get("/api/rankings/mine", headers=heads["ann"]).json()
    assert [m["id"] for m in mine] == [body["ranking_id"]]
    # the progress shown is the database's once the submit is stored
    assert body["next"]["progress"] == queue.progress(store, store.dataset_id("d"), row[0]["user_id"])
    # asking again returns the item handed out, with the expiry shown
    again = _first(c, heads["ann"])["item"]
    assert again["assignment_id"] == nxt["assignment_id"] and again["expires_at"] == nxt["expires_at"]


def test_bad_or_foreign_or_repeated_submits_write_nothing(app_env):
    c, store, app, heads = app_env
    item = _first(c, heads["ann"])["item"]
    app.state.front.drain()
    partial = dict(list(rank_all(item).items())[:3])
    r = c.post("/api/rankings", json={"assignment_id": item["assignment_id"], "ranks": partial}, headers=heads["ann"])
    assert r.status_code == 400 and r.json()["error"]["field"].startswith("ranks.")
    r = _submit(c, heads["bob"], item)  # not bob's
    assert r.status_code == 404, r.text
    assert _journal(store) == [] and store.scalar("SELECT count(*) FROM rankings") == 0
    assert _submit(c, heads["ann"], item).status_code == 201
    r = _submit(c, heads["ann"], item)
    assert r.status_code == 409 and "already submitted" in r.json()["error"]["message"]
    assert store.scalar("SELECT count(*) FROM rankings") == 1 and len(_journal(store)) == 1


@pytest.mark.parametrize("k", [1, 2])
def test_three_annotators_through_the_front_keep_k_and_one_ranking_each(store, k):
    seed(store, prompts=7, answers=3, k=k)
    names = ("ann", "bob", "cid")
    with _serving(store, *names) as (c, app, heads):
        items = {n: _first(c, heads[n])["item"] for n in names}
        submits = 0
        while any(items.values()):
            for n in names:
                if items[n] is None:
                    continue
                r = _submit(c, heads[n], items[n], status="submitted")
                assert r.status_code == 201, r.text
                submits += 1
                items[n] = r.json()["next"]["item"]
        fast = len(_journal(store))
        per_prompt = store.con.execute("SELECT count(*) FROM rankings GROUP BY prompt_id").fetchall()
        assert submits == 7 * k and sorted(n for (n,) in per_prompt) == [k] * 7
        assert store.scalar("SELECT count(*) FROM (SELECT DISTINCT prompt_id, user_id FROM rankings)") == 7 * k
        did = store.dataset_id("d")
        assert _queue_open(store, did) == [] == _rebuilt_queue_open(store, did)
    # only the last submit of each annotator (the queue's end: nothing leased ahead) went to DuckDB
    assert fast >= submits - len(names)


def _import_ranking(store, prompt_id: int, annotator: str) -> None:
    """A ranking written by an import (ids from the sequence, above the reserved ones): the queue folds it in."""
    from db.staging import Batch

    key, gens = store.con.execute(
        "SELECT p.content_hash, list(g.content_hash ORDER BY g.id) FROM prompts p "
        "JOIN generations g ON g.prompt_id = p.id WHERE p.id = ? GROUP BY p.content_hash",
        [prompt_id],
    ).fetchall()[0]
    b = Batch()
    b.rankings.append(
        {
            "ranking_key": annotator,
            "prompt_key": key,
            "annotator": annotator,
            "status": "submitted",
            "source": "import",
        }
    )
    b.items += [{"ranking_key": annotator, "gen_key": g, "rank": i + 1, "position": i} for i, g in enumerate(gens)]
    store.write_batch("d", b, created_by="test")


def test_queue_open_stays_what_a_rebuild_makes_while_others_write(store):
    """Reserved ranking ids sit below the dataset's mark; rankings imported meanwhile are still folded in."""
    prompts = seed(store, prompts=5, answers=2, k=2)
    with _serving(store, "ann", "bob") as (c, app, heads):
        item = _first(c, heads["ann"])["item"]  # prompt 0; prompt 1 leased ahead, a ranking id reserved
        app.state.front.drain()
        _import_ranking(store, prompts[0], "ria")  # ids past the mark, on the prompt ann is ranking
        _import_ranking(store, prompts[3], "ria")
        r = _submit(c, heads["ann"], item)
        assert r.status_code == 201 and len(_journal(store)) == 1
        nxt = _submit(c, heads["ann"], r.json()["next"]["item"])  # the writer folds the imports in before this
        assert nxt.status_code == 201 and len(_journal(store)) == 2
        did = store.dataset_id("d")
        now = _queue_open(store, did)
        assert now == _rebuilt_queue_open(store, did)
        # k=2: prompt 0 (ann + ria) left the queue; prompt 1 (ann) and prompt 3 (ria) have one each
        assert now == [(prompts[1], 1), (prompts[2], 0), (prompts[3], 1), (prompts[4], 0)]


def _front_holding_a_lease(db_path, *, prompts: int, answers: int) -> tuple:
    """(store, front, user, lease): a new database whose annotator ann holds a lease, her item ahead leased."""
    store = Store.open(db_path)
    seed(store, prompts=prompts, answers=answers, k=1)
    add_user(store, "ann")
    user = {"id": store.scalar("SELECT id FROM users WHERE name = 'ann'"), "name": "ann", "role": "annotator"}
    front = QueueFront(store)
    lease, _ = queue.next_item(store, user["id"], dataset="d")
    front.handed_out(lease, user)
    front.drain()
    return store, front, user, lease


def test_acknowledged_submits_survive_a_kill_and_are_stored_once(db_path):
    store, front, user, lease = _front_holding_a_lease(db_path, prompts=3, answers=4)
    front._enqueue = lambda job: None  # the process dies before the writer gets to it
    ranks = {str(g): 1 + i for i, g in enumerate(lease["answer_order"])}
    ranking_id, nxt, _ = front.submit(
        user, lease["assignment_id"], {"status": "submitted", "ranks": ranks, "comment": "东京 ✓"}
    )
    assert store.scalar("SELECT count(*) FROM rankings") == 0  # acknowledged, not yet in the database
    with open(journal_path(store), "ab") as f:
        f.write(b'{"ranking_id": 99, "assig')  # a write cut off by the kill: never acknowledged
    store.close()

    store = Store.open(db_path)
    again = QueueFront(store)  # what the next server start does
    assert again.replayed == 1
    assert store.query("SELECT id, comment FROM rankings") == [{"id": ranking_id, "comment": "东京 ✓"}]
    assert store.scalar("SELECT count(*) FROM pairs") == 6
    assert store.scalar("SELECT expires_at FROM assignments WHERE id = ?", [nxt["assignment_id"]]) == nxt["expires_at"]
    did = store.dataset_id("d")
    assert _queue_open(store, did) == _rebuilt_queue_open(store, did)
    assert journal_path(store).read_bytes() == b""
    again.close()
    store.close()


def test_the_cli_stores_what_a_killed_server_acknowledged_before_it_reads(db_path, run_cli):
    store, front, user, lease = _front_holding_a_lease(db_path, prompts=2, answers=2)
    front._enqueue = lambda job: None  # killed before the write
    front.submit(user, lease["assignment_id"], {"status": "flagged", "flag_reason": "datos personales 🔒"})
    store.close()
    r = run_cli("stats", "--dataset", "d", "--json")
    assert r.exit_code == 0, r.output
    assert '"flagged": 1' in r.output or '"rankings": 1' in r.output, r.output
    store = Store.open(db_path)
    assert store.query("SELECT status, flag_reason FROM rankings") == [
        {"status": "flagged", "flag_reason": "datos personales 🔒"}
    ]
    store.close()


def test_a_long_wait_for_the_store_lock_passes_the_gate_again(store, monkeypatch):
    """Submits acknowledged while a big import held the lock are stored before the next user of the Store."""
    import threading
    import time

    import db.locks

    monkeypatch.setattr(db.locks, "REGATE_S", 0.1)
    calls = []
    store.set_gate(lambda: calls.append(threading.current_thread().name))
    held = threading.Event()

    def importer():
        with store._lock:
            held.set()
            time.sleep(0.3)

    t = threading.Thread(target=importer, name="importer")
    t.start()
    held.wait()
    with store._lock:
        pass
    t.join()
    store.set_gate(None)
    assert calls.count("MainThread") == 2  # once before waiting, once more after the long wait


def test_replaying_twice_stores_nothing_twice_and_a_refused_submit_is_kept(db_path):
    store, front, user, lease = _front_holding_a_lease(db_path, prompts=2, answers=2)
    rid, _, _ = front.submit(user, lease["assignment_id"], {"status": "skipped", "skip_reason": "no sé"})
    front.drain()
    record = json.loads(journal_path(store).read_text(encoding="utf-8"))
    front.close()
    bogus = dict(record, ranking_id=rid + 1000, assignment_id=10**9)  # an assignment the database does not know
    journal_path(store).write_text(
        json.dumps(record, ensure_ascii=False) + "\n" + json.dumps(bogus, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    again = QueueFront(store)
    assert again.replayed == 0 and store.scalar("SELECT count(*) FROM rankings") == 1
    failed = [json.loads(x) for x in open(f"{journal_path(store)}.failed.jsonl", encoding="utf-8")]
    assert [f["submit"]["assignment_id"] for f in failed] == [10**9] and "NotFoundError" in failed[0]["reason"]
    again.close()
    store.close()


def test_an_annotator_holds_one_item_ahead_and_gives_it_back_with_a_release(app_env):
    c, store, app, heads = app_env
    item = _first(c, heads["ann"])["item"]
    app.state.front.drain()
    assert len(_live_leases(store, "ann")) == 2  # the item, and the one after it
    assert c.post(f"/api/assignments/{item['assignment_id']}/release", headers=heads["ann"]).status_code == 200
    assert _live_leases(store, "ann") == []


def test_a_restarted_server_reuses_the_item_ahead_instead_of_leasing_a_third(store):
    seed(store, prompts=6, answers=2, k=1)
    add_user(store, "ann")
    with TestClient(create_app(store)) as c:
        item = _first(c, signed_in(c, "ann"))["item"]
    held = _live_leases(store, "ann")
    assert len(held) == 2
    app = create_app(store)  # a new server: nothing in memory
    with TestClient(app) as c:
        heads = signed_in(c, "ann")
        assert _first(c, heads)["item"]["assignment_id"] == item["assignment_id"]
        app.state.front.drain()
        assert _live_leases(store, "ann") == held
        r = _submit(c, heads, item)
        assert r.status_code == 201 and r.json()["next"]["item"]["prompt"]["id"] == held[1]
        assert len(_journal(store)) == 1  # answered from memory again


def test_items_ahead_are_taken_back_for_whoever_finds_the_queue_empty(store):
    prompts = seed(store, prompts=2, answers=2, k=1)
    with _serving(store, "ann", "bob") as (c, app, heads):
        ann = _first(c, heads["ann"])["item"]
        app.state.front.drain()
        assert _live_leases(store, "ann") == prompts  # k=1: ann holds both prompts, one of them ahead
        bob = _first(c, heads["bob"])["item"]
        assert bob is not None and bob["prompt"]["id"] == prompts[1]  # the item ahead, taken back for bob
        r = _submit(c, heads["ann"], ann)
        assert r.status_code == 201 and r.json()["next"]["item"] is None
        assert _submit(c, heads["bob"], bob).status_code == 201
        assert store.scalar("SELECT count(*) FROM rankings") == 2


def test_a_new_k_or_new_guidelines_release_the_items_ahead(store):
    seed(store, prompts=4, answers=2, k=2)
    with _serving(store, "ann", admins=("adm",)) as (c, app, heads):
        item = _first(c, heads["ann"])["item"]
        app.state.front.drain()
        assert len(_live_leases(store, "ann")) == 2
        r = c.patch("/api/datasets/d", json={"guidelines": "Nuevas reglas 新规则"}, headers=heads["adm"])
        assert r.status_code == 200, r.text
        assert len(_live_leases(store, "ann")) == 1
        r = _submit(c, heads["ann"], item)
        assert r.status_code == 201 and r.json()["next"]["item"]["guidelines"] == "Nuevas reglas 新规则"
