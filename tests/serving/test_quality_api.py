"""Annotator quality and gold over HTTP: reviewers mark gold and read the Annotators table; an annotator can reach
none of it, and the items an annotator is served never say which is gold (through the server's queue front too)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from serving.api.app import create_app
from tests.support.data import add_user, rank_all, seed, signed_in


@pytest.fixture
def env(store):
    prompts = seed(store, prompts=12, answers=3, k=1, texts=["Sí 👍", "不是", "Maybe"])
    for name, role in (("ann", "annotator"), ("bob", "annotator"), ("rev", "reviewer")):
        add_user(store, name, role)
    with TestClient(create_app(store)) as c:
        heads = {n: signed_in(c, n) for n in ("ann", "bob", "rev")}
        yield c, store, prompts, heads


def _answers(store, pid):
    return [r["id"] for r in store.query("SELECT id FROM generations WHERE prompt_id = ? ORDER BY id", [pid])]


def test_annotators_cannot_reach_quality_or_gold(env):
    c, store, prompts, h = env
    pid = prompts[0]
    ranks = {str(g): i + 1 for i, g in enumerate(_answers(store, pid))}
    for method, path, body in (
        ("GET", "/api/annotators?dataset=d", None),
        ("POST", "/api/annotators/bob/controls", {"dataset": "d", "paused": True}),
        ("GET", "/api/gold?dataset=d", None),
        ("POST", "/api/gold", {"prompt_id": pid, "ranks": ranks}),
        ("DELETE", f"/api/gold/{pid}", None),
        ("POST", "/api/gold/rate", {"dataset": "d", "rate": 0.5}),
    ):
        r = c.request(method, path, json=body, headers=h["ann"])
        assert r.status_code == 403, (method, path, r.text)
    assert store.scalar("SELECT count(*) FROM gold_items") == 0
    assert store.scalar("SELECT count(*) FROM annotator_controls") == 0


def test_gold_served_like_any_item_and_measured(env):
    c, store, prompts, h = env
    gold_pid = prompts[-1]
    answers = _answers(store, gold_pid)
    r = c.post(
        "/api/gold", headers=h["rev"], json={"prompt_id": gold_pid, "ranks": {str(answers[0]): 1}, "kind": "best"}
    )
    assert r.status_code == 201, r.text
    assert c.post("/api/gold/rate", headers=h["rev"], json={"dataset": "d", "rate": 0.5}).status_code == 200
    bad = c.post("/api/gold", headers=h["rev"], json={"prompt_id": gold_pid, "ranks": {"x": 1}})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "ranks"
    seen, bodies = [], []
    body = c.get("/api/queue/next", params={"dataset": "d"}, headers=h["ann"]).json()
    for _ in range(6):
        item = body["item"]
        bodies.append(body)
        seen.append(item["prompt"]["id"])
        ranks = rank_all(item)
        if item["prompt"]["id"] == gold_pid:  # ann gets the known best answer wrong
            best = str(answers[0])
            ranks = {g: (len(ranks) if g == best else 1) for g in ranks}
        r = c.post(
            "/api/rankings",
            headers=h["ann"],
            json={"assignment_id": item["assignment_id"], "status": "submitted", "ranks": ranks},
        )
        assert r.status_code in (200, 201), r.text
        body = r.json()["next"]  # the next item comes with the submit, from the server's queue front
    assert gold_pid in seen and len(set(seen)) == len(seen)
    assert "gold" not in repr(bodies).lower()
    assert len({tuple(sorted(b["item"])) for b in bodies}) == 1
    table = c.get("/api/annotators", params={"dataset": "d"}, headers=h["rev"])
    assert table.status_code == 200, table.text
    ann = next(row for row in table.json()["annotators"] if row["annotator"] == "ann")
    assert ann["gold_items"] == 1 and ann["gold_accuracy"] == 0.0 and ann["paused"] is False
    assert table.json()["series"][0]["items"] >= 6
    listed = c.get("/api/gold", params={"dataset": "d"}, headers=h["rev"]).json()
    assert listed["rate"] == 0.5 and [g["prompt_id"] for g in listed["items"]] == [gold_pid]


def test_paused_annotator_is_told_and_resumed(env):
    c, store, prompts, h = env
    r = c.post("/api/annotators/bob/controls", headers=h["rev"], json={"dataset": "d", "paused": True, "weight": 0.5})
    assert r.status_code == 200 and r.json() == {"annotator": "bob", "paused": True, "weight": 0.5}
    r = c.get("/api/queue/next", params={"dataset": "d"}, headers=h["bob"])
    assert r.status_code == 403 and "paused" in r.json()["error"]["message"]
    assert c.post("/api/annotators/nobody/controls", headers=h["rev"], json={"dataset": "d"}).status_code == 404
    bad = c.post("/api/annotators/bob/controls", headers=h["rev"], json={"dataset": "d", "weight": 3})
    assert bad.status_code == 422
    c.post("/api/annotators/bob/controls", headers=h["rev"], json={"dataset": "d", "paused": False})
    assert c.get("/api/queue/next", params={"dataset": "d"}, headers=h["bob"]).json()["item"] is not None
