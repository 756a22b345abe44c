"""Gold items (db/gold.py) in the queue: mixed in at the dataset's rate apart from k, looking like any other item,
never training pairs; a paused annotator gets nothing new; bad gold orders refused with the database unchanged."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from db import gold, queue
from db.errors import ForbiddenError, InputError, NotFoundError
from db.quality import set_control
from tests.support.data import add_user, seed

T0 = datetime(2026, 1, 5, 9, 0, 0)


@pytest.fixture
def g(store):
    prompts = seed(store, prompts=40, answers=3, k=1)
    users = {n: add_user(store, n, password=None) for n in ("ann", "bob", "cat", "dan")}
    ds = store.dataset_id("d")
    gold_ids = prompts[-2:]
    for pid in gold_ids:
        answers = [r["id"] for r in store.query("SELECT id FROM generations WHERE prompt_id = ? ORDER BY id", [pid])]
        gold.mark_gold(store, pid, {a: i + 1 for i, a in enumerate(answers)}, by="rita")
    gold.set_gold_rate(store, ds, 0.25)  # one gold item in every 4
    return store, ds, prompts, gold_ids, users


def _work(store, ds, user, n, t0=T0):
    """Lease and submit n items as `user`; the prompt ids in order."""
    seen = []
    for i in range(n):
        now = t0 + timedelta(seconds=i)
        lease = queue.next_assignment(store, ds, user, now=now)
        if lease is None:
            break
        seen.append(lease["prompt_id"])
        ranks = {str(a): j + 1 for j, a in enumerate(lease["answer_order"])}
        queue.submit(store, user, lease["assignment_id"], status="submitted", ranks=ranks, now=now)
    return seen


def test_gold_is_mixed_in_at_the_rate_and_apart_from_k(g):
    store, ds, prompts, gold_ids, u = g
    for name in ("ann", "bob", "cat"):
        seen = _work(store, ds, u[name], 8)
        assert sum(p in gold_ids for p in seen) == 2, (name, seen)  # exactly one per run of 4, both gold items
        assert [p for p in seen[:4] if p in gold_ids] and [p for p in seen[4:] if p in gold_ids]
    # k = 1, yet every annotator met both gold items: gold takes no slot, and no regular prompt was ranked twice
    regular = store.query(
        "SELECT prompt_id, count(*) AS n FROM rankings WHERE prompt_id NOT IN (SELECT prompt_id FROM gold_items) "
        "GROUP BY 1 HAVING count(*) > 1"
    )
    assert regular == []
    assert store.scalar("SELECT count(*) FROM queue_open WHERE prompt_id IN (SELECT prompt_id FROM gold_items)") == 0


def test_a_gold_lease_looks_like_any_other(g):
    store, ds, prompts, gold_ids, u = g
    leases = []
    for i in range(8):
        now = T0 + timedelta(seconds=i)
        lease = queue.next_assignment(store, ds, u["dan"], now=now)
        leases.append(lease)
        ranks = {str(a): j + 1 for j, a in enumerate(lease["answer_order"])}
        queue.submit(store, u["dan"], lease["assignment_id"], status="submitted", ranks=ranks, now=now)
    shapes = {tuple(sorted(lease)) for lease in leases}
    assert len(shapes) == 1 and not any("gold" in key for key in shapes.pop())
    assert {lease["prompt_id"] for lease in leases} & set(gold_ids)


def test_gold_rankings_never_become_consensus_pairs(g, tmp_path):
    from db.export import export

    store, ds, prompts, gold_ids, u = g
    _work(store, ds, u["ann"], 8)
    result = export(store, "parquet", tmp_path / "p.parquet", dataset="d")
    import pyarrow.parquet as pq

    exported = set(pq.read_table(result.path, columns=["prompt_id"]).column("prompt_id").to_pylist())
    assert exported and not exported & set(gold_ids)


def test_paused_annotator_gets_nothing_new(g):
    store, ds, prompts, gold_ids, u = g
    set_control(store, ds, "bob", paused=True, by="rita")
    with pytest.raises(ForbiddenError, match="paused"):
        queue.next_assignment(store, ds, u["bob"], now=T0)
    set_control(store, ds, "bob", paused=False, by="rita")
    assert queue.next_assignment(store, ds, u["bob"], now=T0) is not None


def test_bad_gold_orders_are_refused_and_change_nothing(g):
    store, ds, prompts, gold_ids, u = g
    pid = prompts[0]
    answers = [r["id"] for r in store.query("SELECT id FROM generations WHERE prompt_id = ? ORDER BY id", [pid])]
    before = store.scalar("SELECT count(*) FROM gold_answers")
    with pytest.raises(InputError, match="missing"):
        gold.mark_gold(store, pid, {answers[0]: 1}, by="rita")
    with pytest.raises(InputError, match="not answers"):
        gold.mark_gold(store, pid, {answers[0]: 1, answers[1]: 2, answers[2]: 3, 999999: 4}, by="rita")
    with pytest.raises(InputError, match="above another"):
        gold.mark_gold(store, pid, dict.fromkeys(answers, 1), by="rita")
    with pytest.raises(InputError, match="exactly one"):
        gold.mark_gold(store, pid, {answers[0]: 1, answers[1]: 1}, kind="best", by="rita")
    with pytest.raises(NotFoundError):
        gold.mark_gold(store, 10**9, {1: 1}, by="rita")
    with pytest.raises(InputError, match="0.5"):
        gold.set_gold_rate(store, ds, 0.9)
    assert store.scalar("SELECT count(*) FROM gold_answers") == before
    best = gold.mark_gold(store, pid, {answers[1]: 1}, kind="best", by="rita")
    assert best["ranks"] == {answers[0]: 2, answers[1]: 1, answers[2]: 2}
    assert gold.unmark_gold(store, pid) and gold.gold_item(store, pid) is None


def test_gold_records_in_a_ranked_file_become_gold_items(store, tmp_path):
    import json

    from db.importers import import_file

    rows = [
        {"prompt": "¿Capital de Francia?", "responses": ["París", "Lyon", "巴黎"], "ranks": [1, 3, 2], "gold": True},
        {"prompt": "¿2+2?", "responses": ["4", "5", "22"], "ranks": [1, 2, 2], "gold": "best"},
        {"prompt": "Un chiste 😄", "responses": ["Ja", "Jo"], "ranks": [2, 1]},
    ]
    path = tmp_path / "gold.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    report = import_file(store, path, fmt="ranked", dataset="g")
    assert report.accounting()["added"] == 3
    items = {r["kind"]: r["prompt_id"] for r in store.query("SELECT prompt_id, kind FROM gold_items")}
    assert set(items) == {"order", "best"}
    assert store.scalar("SELECT count(*) FROM rankings") == 1  # the gold orders are not annotators' rankings
    known = gold.gold_item(store, items["order"])["ranks"]
    texts = dict(store.con.execute("SELECT id, text FROM generations").fetchall())
    assert {texts[g]: r for g, r in known.items()} == {"París": 1, "巴黎": 2, "Lyon": 3}
    best = gold.gold_item(store, items["best"])["ranks"]
    assert sorted(best.values()) == [1, 2, 2] and texts[next(g for g, r in best.items() if r == 1)] == "4"
    again = import_file(store, path, fmt="ranked", dataset="g")
    assert again.accounting()["already_stored"] == 3 and store.scalar("SELECT count(*) FROM gold_answers") == 6
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**rows[2], "prompt": "otra", "gold": "yes"}) + "\n", encoding="utf-8")
    before = store.counts()
    with pytest.raises(InputError) as e:
        import_file(store, bad, fmt="ranked", dataset="g")
    assert e.value.field == "gold" and e.value.line == 1 and store.counts() == before


def test_the_duckdb_import_path_hands_gold_records_to_the_python_path(store, tmp_path):
    import json

    from db.importers import import_file

    rows = [
        {"prompt": "¿Capital de Perú?", "responses": ["Lima", "Cusco"], "ranks": [1, 2], "gold": True},
        {"prompt": "Un chiste 😄", "responses": ["Ja", "Jo"], "ranks": [2, 1], "gold": False},
    ]
    path = tmp_path / "gold.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    report = import_file(store, path, fmt="ranked", dataset="g", engine="duckdb")
    assert report.engine == "python"  # the gold record is not lost on the fast path
    assert store.scalar("SELECT count(*) FROM gold_items") == 1 and store.scalar("SELECT count(*) FROM rankings") == 1
