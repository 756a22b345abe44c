"""Thumbs on one arena answer (POST /api/feedback): only on an answer of one's own battle, one label per person
and answer (a second call replaces it)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from db import arena as arena_db
from serving.api.app import create_app
from tests.support.data import add_user, signed_in


def _voted_battle(store, uid: int, name: str) -> tuple[int, dict]:
    bid = arena_db.create_battle(store, "tiny", "tiny-lora", created_by=name, user_id=uid)
    msgs = [{"role": "user", "content": "¿Color favorito? 🎨"}]
    turn = {"user": msgs[0]["content"], "content": msgs[0]["content"], "messages_a": msgs, "context": []}
    arena_db.save_turns(store, bid, [{**turn, "a": {"text": "Rojo 🟥"}, "b": {"text": "蓝色"}}], False)
    arena_db.record_vote(store, bid, "a", user={"id": uid, "name": name})
    vote = store.row("SELECT generation_a, generation_b FROM arena_votes WHERE user_id = ?", [uid])
    return bid, vote


def test_thumbs_on_own_arena_answers_only(store):
    ana = add_user(store, "ana")
    add_user(store, "bob")
    bid, vote = _voted_battle(store, ana, "ana")
    with TestClient(create_app(store)) as c:
        h_ana, h_bob = signed_in(c, "ana"), signed_in(c, "bob")
        assert c.post("/api/feedback", json={"generation_id": vote["generation_a"], "label": True}).status_code == 401
        r = c.post("/api/feedback", json={"generation_id": vote["generation_a"], "label": True}, headers=h_bob)
        assert r.status_code == 404 and r.json()["error"]["field"] == "generation_id"
        r = c.post("/api/feedback", json={"battle_id": bid, "side": "b", "label": False}, headers=h_bob)
        assert r.status_code == 404 and "tiny" not in r.text
        assert store.scalar("SELECT count(*) FROM feedback") == 0
        r = c.post("/api/feedback", json={"generation_id": vote["generation_a"], "label": True}, headers=h_ana)
        assert r.status_code == 201 and r.json()["source"] == "arena", r.text
        r = c.post(
            "/api/feedback",
            json={"generation_id": vote["generation_a"], "label": False, "comment": "Mal, 不对 👎"},
            headers=h_ana,
        )
        assert r.status_code == 201, r.text
        r = c.post("/api/feedback", json={"battle_id": bid, "side": "b", "label": True}, headers=h_ana)
        assert r.status_code == 201 and r.json()["generation_id"] == vote["generation_b"], r.text
        r = c.post("/api/feedback", json={"label": True}, headers=h_ana)
        assert r.status_code == 400 and r.json()["error"]["field"] == "generation_id"
    rows = store.query("SELECT generation_id, user_id, label, source, comment FROM feedback")
    # the two answers' ids come in either order (they are stored in one statement): compare without it
    assert sorted(rows, key=lambda r: r["label"]) == [
        {"generation_id": vote["generation_a"], "user_id": ana, "label": False, "source": "arena",
         "comment": "Mal, 不对 👎"},
        {"generation_id": vote["generation_b"], "user_id": ana, "label": True, "source": "arena", "comment": None},
    ]  # fmt: skip


def test_an_unvoted_battle_has_no_stored_answers_yet(store):
    ana = add_user(store, "ana")
    bid = arena_db.create_battle(store, "tiny", "tiny-lora", created_by="ana", user_id=ana)
    with TestClient(create_app(store)) as c:
        r = c.post("/api/feedback", json={"battle_id": bid, "side": "a", "label": True}, headers=signed_in(c, "ana"))
        assert r.status_code == 409 and r.json()["error"]["field"] == "battle_id", r.text
