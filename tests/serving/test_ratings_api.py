"""Aspect ratings, a rationale and thumbs over HTTP: admins set them per dataset, the item an annotator is served
says what to ask (and still nothing about gold), and a submit carries them through the server's journaled fast path
as well as the database path; a bad one is a 400 naming the field with nothing stored."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from db.journal import path_of as journal_path
from serving.api.app import create_app
from tests.support.data import add_user, rank_all, seed, signed_in

WHY = "La segunda inventa datos; 第一个更好 👍"


@pytest.fixture
def env(store):
    seed(store, prompts=6, answers=3, k=2, texts=["Sí 👍", "不是", "Quizás"])
    seed(store, "r", prompts=2, answers=1, k=1)
    for name, role in (("ann", "annotator"), ("bob", "annotator"), ("adm", "admin")):
        add_user(store, name, role)
    app = create_app(store)
    with TestClient(app) as c:
        yield c, store, app, {n: signed_in(c, n) for n in ("ann", "bob", "adm")}


def _configure(c, heads, dataset="d", **body):
    r = c.put(f"/api/datasets/{dataset}/settings", json=body, headers=heads["adm"])
    assert r.status_code == 200, r.text
    return r.json()


def _ratings(item, value=3):
    return {str(a["id"]): {"helpfulness": value} for a in item["answers"]}


def test_only_admins_change_settings_and_bad_aspects_name_the_field(env):
    c, store, _, h = env
    r = c.put("/api/datasets/d/settings", json={"rationale": "required"}, headers=h["ann"])
    assert r.status_code == 403
    assert c.get("/api/datasets/d/settings", headers=h["ann"]).status_code == 403
    bad = {"aspects": [{"name": "útil", "min": 3, "max": 1}]}
    r = c.put("/api/datasets/d/settings", json=bad, headers=h["adm"])
    assert r.status_code == 400 and r.json()["error"]["field"] == "aspects[0].max", r.text
    assert store.scalar("SELECT count(*) FROM dataset_settings") == 0
    got = _configure(c, h, aspects="helpsteer2", rationale="optional")
    assert [a["name"] for a in got["aspects"]][:2] == ["helpfulness", "correctness"]
    assert got["presets"]["helpsteer2"] == got["aspects"]
    assert c.get("/api/datasets/nope/settings", headers=h["adm"]).status_code == 404


def test_ratings_and_rationale_through_the_journal_and_the_database(env):
    c, store, app, h = env
    aspects = [{"name": "helpfulness", "min": 0, "max": 4, "description": "¿Ayuda? 有帮助吗", "required": True}]
    _configure(c, h, aspects=aspects, rationale="required")
    body = c.get("/api/queue/next", params={"dataset": "d"}, headers=h["ann"]).json()
    item = body["item"]
    assert (item["task"], item["rationale"], item["aspects"]) == ("rank", "required", aspects)
    for _ in range(2):  # the second submit is certain to find its item leased ahead
        r = c.post(
            "/api/rankings",
            json={"assignment_id": item["assignment_id"], "ranks": rank_all(item), "ratings": _ratings(item),
                  "rationale": WHY},
            headers=h["ann"],
        )  # fmt: skip
        assert r.status_code == 201, r.text
        item = r.json()["next"]["item"]
    assert r.headers["X-PrefLab-Submit"] == "journal"
    journaled = [json.loads(line) for line in journal_path(store).read_text(encoding="utf-8").splitlines()]
    assert journaled[-1]["fields"]["rationale"] == WHY and journaled[-1]["fields"]["ratings"]
    app.state.front.drain()
    rid = r.json()["ranking_id"]
    assert store.scalar("SELECT rationale FROM ranking_notes WHERE ranking_id = ?", [rid]) == WHY
    assert store.scalar("SELECT count(*) FROM ratings WHERE ranking_id = ?", [rid]) == 3
    assert store.scalar("SELECT count(*) FROM ranking_notes") == 2
    assert "gold" not in repr(r.json()).lower()


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b, ids: b["ratings"][ids[0]].pop("helpfulness"), "ratings.{0}.helpfulness"),
        (lambda b, ids: b["ratings"][ids[1]].update(helpfulness=7), "ratings.{1}.helpfulness"),
        (lambda b, ids: b["ratings"][ids[0]].update(estilo=2), "ratings.{0}.estilo"),
        (lambda b, ids: b["ratings"].update({"424242": {"helpfulness": 1}}), "ratings.424242"),
        (lambda b, ids: b.update(rationale=" "), "rationale"),
        (lambda b, ids: b.update(thumbs={ids[0]: True}), "thumbs"),
    ],
)
def test_bad_feedback_is_a_400_naming_the_field_on_both_paths(env, mutate, field):
    c, store, app, h = env
    aspects = [{"name": "helpfulness", "min": 0, "max": 4, "required": True}]
    _configure(c, h, aspects=aspects, rationale="required")
    item = c.get("/api/queue/next", params={"dataset": "d"}, headers=h["ann"]).json()["item"]
    app.state.front.drain()
    for _ in range(2):  # journal path (item ahead ready), then the database path (the front forgets the lease)
        ids = [str(a["id"]) for a in item["answers"]]
        body = {"assignment_id": item["assignment_id"], "ranks": rank_all(item), "ratings": _ratings(item),
                "rationale": WHY}  # fmt: skip
        mutate(body, ids)
        r = c.post("/api/rankings", json=body, headers=h["ann"])
        assert r.status_code == 400, r.text
        assert r.json()["error"]["field"] == field.format(*ids)
        app.state.front.drain()
        assert store.scalar("SELECT count(*) FROM rankings") == 0
        assert store.scalar("SELECT count(*) FROM ratings") == 0
        app.state.front.settings_changed(store.dataset_id("d"))


def test_a_rate_item_with_one_answer_takes_thumbs(env):
    c, store, app, h = env
    assert c.get("/api/queue/next", params={"dataset": "r"}, headers=h["ann"]).json()["item"] is None
    _configure(c, h, dataset="r", task="rate")
    item = c.get("/api/queue/next", params={"dataset": "r"}, headers=h["ann"]).json()["item"]
    assert item["task"] == "rate" and len(item["answers"]) == 1
    gid = str(item["answers"][0]["id"])
    r = c.post("/api/rankings", json={"assignment_id": item["assignment_id"]}, headers=h["ann"])
    assert r.status_code == 400 and r.json()["error"]["field"] == f"thumbs.{gid}"
    r = c.post("/api/rankings", json={"assignment_id": item["assignment_id"], "thumbs": {gid: True}}, headers=h["ann"])
    assert r.status_code == 201, r.text
    app.state.front.drain()
    assert store.query("SELECT label, source FROM feedback") == [{"label": True, "source": "human"}]
    assert store.scalar("SELECT status FROM rankings") == "submitted"
    nxt = r.json()["next"]["item"]
    assert nxt is not None and nxt["prompt"]["id"] != item["prompt"]["id"]
