"""The assignment queue (db/queue/): k slots per prompt, leases, expiry, stored random order, validation."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from db import queue
from db.errors import ConflictError, InputError, NotFoundError
from tests.support.data import add_user, seed

T0 = datetime(2026, 1, 5, 9, 0, 0)


def _ranks(lease, order=None):
    gens = lease["answer_order"]
    return {str(g): i + 1 for i, g in enumerate(order or gens)}


@pytest.fixture
def q(store):
    prompts = seed(store, prompts=3, answers=4, k=2)
    users = {n: add_user(store, n, password=None) for n in ("ann", "bob", "cat")}
    return store, store.dataset_id("d"), prompts, users


def test_k_slots_leases_and_own_lease_returned(q):
    store, ds, prompts, u = q
    a = queue.next_assignment(store, ds, u["ann"], now=T0)
    assert a["prompt_id"] == prompts[0]
    again = queue.next_assignment(store, ds, u["ann"], now=T0 + timedelta(minutes=1))
    assert (again["assignment_id"], again["answer_order"]) == (a["assignment_id"], a["answer_order"])
    b = queue.next_assignment(store, ds, u["bob"], now=T0)
    assert b["prompt_id"] == prompts[0]  # k = 2: a second slot on the same prompt
    c = queue.next_assignment(store, ds, u["cat"], now=T0)
    assert c["prompt_id"] == prompts[1]  # both slots of prompt 0 are leased


def test_expired_lease_returns_slot_and_late_submit_kept_when_free(q):
    store, ds, prompts, u = q
    a = queue.next_assignment(store, ds, u["ann"], now=T0, lease_s=600)
    queue.next_assignment(store, ds, u["bob"], now=T0, lease_s=600)
    later = T0 + timedelta(minutes=11)
    c = queue.next_assignment(store, ds, u["cat"], now=later)
    assert c["prompt_id"] == prompts[0]  # ann's and bob's leases expired: the slots are free again
    # ann's lease lapsed but one slot is still free (bob never submitted): her work is kept
    rid = queue.submit(store, u["ann"], a["assignment_id"], status="submitted", ranks=_ranks(a), now=later)
    assert store.scalar("SELECT count(*) FROM rankings WHERE id = ?", [rid]) == 1


def test_late_submit_refused_when_slot_was_taken(q):
    store, ds, prompts, u = q
    store.con.execute("UPDATE datasets SET annotators_per_prompt = 1")
    a = queue.next_assignment(store, ds, u["ann"], now=T0)
    later = T0 + timedelta(minutes=11)
    b = queue.next_assignment(store, ds, u["bob"], now=later)
    assert b["prompt_id"] == a["prompt_id"]
    with pytest.raises(ConflictError, match="expired"):
        queue.submit(store, u["ann"], a["assignment_id"], status="submitted", ranks=_ranks(a), now=later)


def test_a_lapsed_lease_leased_again_to_the_same_person_is_submitted_once(q):
    store, ds, prompts, u = q
    a = queue.next_assignment(store, ds, u["ann"], now=T0, lease_s=600)
    later = T0 + timedelta(minutes=11)
    again = queue.next_assignment(store, ds, u["ann"], now=later)
    assert again["prompt_id"] == a["prompt_id"] and again["assignment_id"] != a["assignment_id"]
    # the old tab's submit is refused (k=2 would have a free slot): the new lease is the one that counts
    with pytest.raises(ConflictError, match=f"assignment {again['assignment_id']}"):
        queue.submit(store, u["ann"], a["assignment_id"], status="submitted", ranks=_ranks(a), now=later)
    queue.submit(store, u["ann"], again["assignment_id"], status="submitted", ranks=_ranks(again), now=later)
    assert store.scalar("SELECT count(*) FROM rankings") == 1


def test_completed_prompts_leave_every_queue_and_no_one_ranks_twice(q):
    store, ds, prompts, u = q
    for name in ("ann", "bob"):
        lease = queue.next_assignment(store, ds, u[name], now=T0)
        assert lease["prompt_id"] == prompts[0]
        queue.submit(store, u[name], lease["assignment_id"], status="submitted", ranks=_ranks(lease), now=T0)
    assert queue.next_assignment(store, ds, u["cat"], now=T0)["prompt_id"] == prompts[1]
    nxt = queue.next_assignment(store, ds, u["ann"], now=T0)
    assert nxt["prompt_id"] == prompts[1]
    assert store.scalar("SELECT count(*) FROM queue_open WHERE prompt_id = ?", [prompts[0]]) == 0
    assert queue.progress(store, ds, u["ann"], now=T0) == {"done_today": 1, "remaining": 2}


def test_user_who_ranked_never_gets_prompt_again(q):
    store, ds, prompts, u = q
    seen = []
    for _ in range(3):
        lease = queue.next_assignment(store, ds, u["ann"], now=T0)
        seen.append(lease["prompt_id"])
        queue.submit(store, u["ann"], lease["assignment_id"], status="skipped", skip_reason="unsure", now=T0)
    assert seen == prompts
    assert queue.next_assignment(store, ds, u["ann"], now=T0) is None


def test_answer_order_random_per_assignment_stored_and_positions_recorded(store):
    prompts = seed(store, prompts=12, answers=4, k=1)
    uid = add_user(store, "ann", password=None)
    ds = store.dataset_id("d")
    orders = []
    for _ in range(12):
        lease = queue.next_assignment(store, ds, uid, now=T0)
        stored = store.scalar("SELECT answer_order FROM assignments WHERE id = ?", [lease["assignment_id"]])
        assert json.loads(stored) == lease["answer_order"]
        orders.append(lease["answer_order"])
        rid = queue.submit(store, uid, lease["assignment_id"], status="submitted", ranks=_ranks(lease), now=T0)
        pos = dict(
            store.con.execute(
                "SELECT generation_id, position FROM ranking_items WHERE ranking_id = ?", [rid]
            ).fetchall()
        )
        assert pos == {g: i for i, g in enumerate(lease["answer_order"])}
    assert len(prompts) == 12
    assert any(o != sorted(o) for o in orders)  # not id order every time
    assert len({tuple(sorted(o)) for o in orders}) == 12


def test_ranks_validated_and_normalised_to_dense(q):
    store, ds, prompts, u = q
    lease = queue.next_assignment(store, ds, u["ann"], now=T0)
    g = lease["answer_order"]
    with pytest.raises(InputError) as e:
        queue.submit(store, u["ann"], lease["assignment_id"], status="submitted", ranks={str(g[0]): 1}, now=T0)
    assert e.value.field.startswith("ranks.")
    with pytest.raises(InputError, match=">= 1"):
        queue.submit(store, u["ann"], lease["assignment_id"], status="submitted", ranks={str(x): 0 for x in g}, now=T0)
    with pytest.raises(InputError, match="not part"):
        queue.submit(
            store,
            u["ann"],
            lease["assignment_id"],
            status="submitted",
            ranks={**{str(x): 1 for x in g}, "999999": 2},
            now=T0,
        )
    with pytest.raises(InputError) as e:
        queue.submit(store, u["ann"], lease["assignment_id"], status="skipped", now=T0)
    assert e.value.field == "skip_reason"
    with pytest.raises(InputError) as e:
        queue.submit(store, u["ann"], lease["assignment_id"], status="flagged", flag_reason=" ", now=T0)
    assert e.value.field == "flag_reason"
    before = store.counts()
    rid = queue.submit(
        store,
        u["ann"],
        lease["assignment_id"],
        status="submitted",
        ranks={str(g[0]): 2, str(g[1]): 5, str(g[2]): 5, str(g[3]): 9},
        now=T0,
    )
    ranks = dict(
        store.con.execute("SELECT generation_id, rank FROM ranking_items WHERE ranking_id = ?", [rid]).fetchall()
    )
    assert ranks == {g[0]: 1, g[1]: 2, g[2]: 2, g[3]: 3}
    assert store.scalar("SELECT count(*) FROM pairs WHERE ranking_id = ?", [rid]) == 6
    assert store.scalar("SELECT count(*) FROM pairs WHERE ranking_id = ? AND is_tie", [rid]) == 1
    assert store.counts()["rankings"] == before["rankings"] + 1
    with pytest.raises(ConflictError, match="already submitted"):
        queue.submit(store, u["ann"], lease["assignment_id"], status="submitted", ranks=_ranks(lease), now=T0)


def test_someone_elses_assignment_is_not_found(q):
    store, ds, prompts, u = q
    lease = queue.next_assignment(store, ds, u["ann"], now=T0)
    with pytest.raises(NotFoundError):
        queue.submit(store, u["bob"], lease["assignment_id"], status="submitted", ranks=_ranks(lease), now=T0)


def test_prompts_with_one_answer_are_not_queued_until_a_second_arrives(store):
    seed(store, prompts=1, answers=1, k=1)
    uid = add_user(store, "ann", password=None)
    ds = store.dataset_id("d")
    assert queue.next_assignment(store, ds, uid, now=T0) is None
    from db.hashing import prompt_hash, text_hash
    from db.staging import Batch

    msgs = [{"role": "user", "content": "question 0 ¿qué? 東京 🗼"}]
    b = Batch(
        prompts=[{"key": prompt_hash(msgs), "messages": json.dumps(msgs, ensure_ascii=False)}],
        generations=[{"prompt_key": prompt_hash(msgs), "gen_key": text_hash("late"), "text": "late"}],
    )
    store.write_batch("d", b, created_by="sampler")  # written behind the queue's back, like the sampler does
    lease = queue.next_assignment(store, ds, uid, now=T0)
    assert lease is not None and len(lease["answer_order"]) == 2


def test_imported_rankings_fill_slots_and_k_change_rebuilds(q):
    store, ds, prompts, u = q
    for name in ("ann", "bob"):
        lease = queue.next_assignment(store, ds, u[name], now=T0)
        queue.submit(store, u[name], lease["assignment_id"], status="submitted", ranks=_ranks(lease), now=T0)
    assert store.scalar("SELECT count(*) FROM queue_open") == 2
    queue.update_dataset(store, "d", k=3)
    assert queue.next_assignment(store, ds, u["cat"], now=T0)["prompt_id"] == prompts[0]  # room again with k=3


def test_guideline_version_bumps_and_is_stored_on_rankings(q):
    store, ds, prompts, u = q
    assert queue.update_dataset(store, "d", guidelines="# Rank by helpfulness")["guideline_version"] == 2
    assert queue.update_dataset(store, "d", guidelines="# Rank by helpfulness")["guideline_version"] == 2
    assert queue.update_dataset(store, "d", guidelines="# Rank by honesty first")["guideline_version"] == 3
    lease = queue.next_assignment(store, ds, u["ann"], now=T0)
    rid = queue.submit(store, u["ann"], lease["assignment_id"], status="submitted", ranks=_ranks(lease), now=T0)
    assert store.scalar("SELECT guideline_version FROM rankings WHERE id = ?", [rid]) == 3


def test_dense_ranks():
    assert queue.dense_ranks({1: 3, 2: 3, 3: 10, 4: 1}) == {1: 2, 2: 2, 3: 3, 4: 1}


def test_pairs_written_by_submit_match_the_store_derivation(q):
    store, ds, prompts, u = q
    lease = queue.next_assignment(store, ds, u["ann"], now=T0)
    g = lease["answer_order"]
    rid = queue.submit(
        store,
        u["ann"],
        lease["assignment_id"],
        status="submitted",
        ranks={str(g[0]): 2, str(g[1]): 1, str(g[2]): 2, str(g[3]): 3},
        now=T0,
    )
    sql = (
        "SELECT prompt_id, chosen_id, rejected_id, margin, is_tie, source FROM pairs WHERE ranking_id = ? "
        "ORDER BY 2, 3"
    )
    ours = store.query(sql, [rid])
    store.derive_pairs([rid])  # the Store's SQL rule, replacing ours
    assert store.query(sql, [rid]) == ours and len(ours) == 6


def test_submit_and_next_is_one_transaction_and_matches_submit_then_next(q):
    store, ds, prompts, u = q
    a = queue.next_assignment(store, ds, u["ann"], now=T0)
    rid, lease, progress = queue.submit_and_next(
        store, u["ann"], a["assignment_id"], status="submitted", ranks=_ranks(a), now=T0
    )
    assert store.scalar("SELECT count(*) FROM pairs WHERE ranking_id = ?", [rid]) == 6
    assert lease["prompt_id"] == prompts[1] and progress == {"done_today": 1, "remaining": 2}
    assert (
        json.loads(store.scalar("SELECT answer_order FROM assignments WHERE id = ?", [lease["assignment_id"]]))
        == (lease["answer_order"])
    )
    assert sorted(lease["texts"]) == sorted(lease["answer_order"]) and lease["dataset"] == "d"
    # a live lease of the user's own comes back rather than a new one: bob's lease lapsed and he got the prompt
    # again; skipping the old one late is refused (it would be his second ranking of it), the new one comes back
    later = T0 + timedelta(minutes=11)
    b = queue.next_assignment(store, ds, u["bob"], now=T0)
    c = queue.next_assignment(store, ds, u["bob"], now=later)
    assert c["assignment_id"] != b["assignment_id"] and c["prompt_id"] == b["prompt_id"]
    with pytest.raises(ConflictError, match="leased to you again"):
        queue.submit_and_next(
            store, u["bob"], b["assignment_id"], status="skipped", skip_reason="came back late", now=later
        )
    again = queue.next_assignment(store, ds, u["bob"], now=later)
    assert again["assignment_id"] == c["assignment_id"] and again["answer_order"] == c["answer_order"]
    # nothing of a failed submit is written, and the lease is still there to submit again
    before = store.counts()
    with pytest.raises(InputError):
        queue.submit_and_next(store, u["ann"], lease["assignment_id"], status="submitted", ranks={}, now=T0)
    assert store.counts() == before


def test_api_stores_the_ranking_when_the_next_item_fails(store, monkeypatch):
    """If the one-transaction path fails inside DuckDB, the ranking is stored on its own: no submit is lost."""
    import threading

    import duckdb
    from fastapi.testclient import TestClient

    from serving.api.app import create_app
    from tests.support.data import signed_in

    seed(store, prompts=3, answers=3, k=1)
    add_user(store, "ann")
    app = create_app(store)
    with TestClient(app) as c:
        h = signed_in(c, "ann")
        item = c.get("/api/queue/next", params={"dataset": "d"}, headers=h).json()["item"]
        # take the database path: no item leased ahead (serving/api/queue_front.py), and the writer thread idle
        app.state.front.drain()
        app.state.front.release_ahead(store.scalar("SELECT id FROM users WHERE name = 'ann'"), store.dataset_id("d"))
        real = queue.leases._next_in_tx

        def broken(*args, **kwargs):
            if not calls and threading.current_thread().name != "preflab-queue-writer":
                calls.append(1)
                raise duckdb.TransactionException("simulated write-write conflict")
            return real(*args, **kwargs)

        calls: list = []
        monkeypatch.setattr(queue.leases, "_next_in_tx", broken)
        ranks = {str(a["id"]): i + 1 for i, a in enumerate(item["answers"])}
        r = c.post("/api/rankings", headers=h, json={"assignment_id": item["assignment_id"], "ranks": ranks})
        assert r.status_code == 201, r.text
        assert calls and store.scalar("SELECT count(*) FROM rankings WHERE id = ?", [r.json()["ranking_id"]]) == 1
        assert r.json()["next"]["item"]["prompt"]["id"] != item["prompt"]["id"]
        assert r.json()["next"]["progress"] == {"done_today": 1, "remaining": 2}


def test_releasing_someone_elses_assignment_is_refused_and_ones_own_works(q):
    store, ds, prompts, u = q
    lease = queue.next_assignment(store, ds, u["ann"], now=T0)
    with pytest.raises(NotFoundError, match="of yours"):
        queue.release(store, u["bob"], lease["assignment_id"])
    assert store.scalar("SELECT status FROM assignments WHERE id = ?", [lease["assignment_id"]]) == "leased"
    with pytest.raises(NotFoundError):
        queue.release(store, u["bob"], 10**9)
    assert queue.release(store, u["ann"], lease["assignment_id"]) is True
    assert store.scalar("SELECT status FROM assignments WHERE id = ?", [lease["assignment_id"]]) == "released"
    assert queue.release(store, u["ann"], lease["assignment_id"]) is False  # already given back: nothing to do


def _pairs(store, rid):
    rows = store.con.execute(
        "SELECT chosen_id, rejected_id, margin, is_tie FROM pairs WHERE ranking_id = ? ORDER BY ALL", [rid]
    ).fetchall()
    return [tuple(r) for r in rows]


def test_changing_ones_own_ranking_rederives_its_pairs_while_the_prompt_is_open(q):
    from db import history

    store, ds, prompts, u = q  # k = 2
    lease = queue.next_assignment(store, ds, u["ann"], now=T0)
    order = lease["answer_order"]
    rid = queue.submit(store, u["ann"], lease["assignment_id"], status="submitted", ranks=_ranks(lease), now=T0)
    [row] = history.mine(store, u["ann"])
    assert row["id"] == rid and row["editable"] and row["snippet"] == "question 0 ¿qué? 東京 🗼"
    assert history.mine(store, u["bob"]) == []

    reversed_ranks = {str(g): len(order) - i for i, g in enumerate(order)}  # the worst is now the best
    changed = history.change(store, u["ann"], rid, status="submitted", ranks=reversed_ranks, comment="¡mejor así!")
    assert [a["id"] for a in changed["answers"]] == order  # still in the order ann saw them
    assert changed["ranks"] == {g: len(order) - i for i, g in enumerate(order)} and changed["comment"] == "¡mejor así!"
    expected = sorted(
        (c, r, m, t) for c, r, m, t in queue.ranking_pairs({g: len(order) - i for i, g in enumerate(order)})
    )
    assert _pairs(store, rid) == expected
    assert store.scalar("SELECT count(*) FROM pairs WHERE ranking_id = ?", [rid]) == 6
    with pytest.raises(NotFoundError, match="of yours"):
        history.change(store, u["bob"], rid, status="submitted", ranks=reversed_ranks)

    # bob completes the prompt (k = 2): it is closed, ann's ranking stays as it is
    b = queue.next_assignment(store, ds, u["bob"], now=T0)
    assert b["prompt_id"] == lease["prompt_id"]
    queue.submit(store, u["bob"], b["assignment_id"], status="submitted", ranks=_ranks(b), now=T0)
    assert history.mine(store, u["ann"])[0]["editable"] is False
    with pytest.raises(ConflictError, match="closed"):
        history.change(store, u["ann"], rid, status="skipped", skip_reason="changed my mind")
    assert _pairs(store, rid) == expected


def test_a_skip_turned_into_a_ranking_takes_a_slot(q):
    from db import history

    store, ds, prompts, u = q  # k = 2
    a = queue.next_assignment(store, ds, u["ann"], now=T0)
    rid = queue.submit(store, u["ann"], a["assignment_id"], status="skipped", skip_reason="unsure", now=T0)
    b = queue.next_assignment(store, ds, u["bob"], now=T0)
    queue.submit(store, u["bob"], b["assignment_id"], status="submitted", ranks=_ranks(b), now=T0)
    assert b["prompt_id"] == a["prompt_id"]
    c = queue.next_assignment(store, ds, u["cat"], now=T0)
    assert c["prompt_id"] == a["prompt_id"]  # one slot left, cat holds it
    with pytest.raises(ConflictError, match="slot"):  # ann's skip cannot become a third ranking
        history.change(store, u["ann"], rid, status="submitted", ranks=_ranks(a), now=T0)
    queue.release(store, u["cat"], c["assignment_id"])
    history.change(store, u["ann"], rid, status="submitted", ranks=_ranks(a), now=T0)
    assert store.scalar("SELECT count(*) FROM pairs WHERE ranking_id = ?", [rid]) == 6
    # the prompt is complete now: the queue hands cat the next one
    assert queue.next_assignment(store, ds, u["cat"], now=T0)["prompt_id"] == prompts[1]
    assert history.mine(store, u["ann"])[0]["editable"] is False


def test_a_ranking_turned_into_a_flag_frees_its_slot(q):
    from db import history

    store, ds, prompts, u = q  # k = 2
    a = queue.next_assignment(store, ds, u["ann"], now=T0)
    rid = queue.submit(store, u["ann"], a["assignment_id"], status="submitted", ranks=_ranks(a), now=T0)
    assert queue.next_assignment(store, ds, u["bob"], now=T0)["prompt_id"] == prompts[0]  # the second slot
    assert queue.next_assignment(store, ds, u["cat"], now=T0)["prompt_id"] == prompts[1]  # none left on prompt 0
    queue.release(store, u["cat"], store.scalar("SELECT max(id) FROM assignments"))
    history.change(store, u["ann"], rid, status="flagged", flag_reason="harmful after all", now=T0)
    assert store.scalar("SELECT count(*) FROM pairs WHERE ranking_id = ?", [rid]) == 0  # a flag carries no pairs
    assert queue.next_assignment(store, ds, u["cat"], now=T0)["prompt_id"] == prompts[0]  # ann's slot is free again
