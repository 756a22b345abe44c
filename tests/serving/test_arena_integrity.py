"""Arena anti-gaming and categories: a daily vote cap per user (429), voters who vote against the consensus flagged
for admins only, and leaderboards per category."""

from __future__ import annotations

from fastapi.testclient import TestClient

from db import arena as arena_db
from serving.api.app import ServerConfig, create_app
from serving.arena.battles import leaderboard, voters
from tests.serving.test_arena import _battle_with_a_turn
from tests.support.data import add_user, signed_in


def _vote(store, uid, name, winner, a="tiny", b="tiny-lora"):
    bid = arena_db.create_battle(store, a, b, created_by=name, user_id=uid)
    msgs = [{"role": "user", "content": f"¿Color {bid}? 🎨"}]
    turn = {"user": msgs[0]["content"], "content": msgs[0]["content"], "messages_a": msgs, "context": []}
    arena_db.save_turns(store, bid, [{**turn, "a": {"text": f"Rojo {bid}"}, "b": {"text": f"蓝色 {bid}"}}], False)
    arena_db.record_vote(store, bid, winner, user={"id": uid, "name": name})


def test_daily_vote_cap_answers_429_and_stores_nothing(store):
    ana = add_user(store, "ana")
    bids = [_battle_with_a_turn(store, ana, "ana") for _ in range(3)]
    with TestClient(create_app(store, ServerConfig(arena_daily_votes=2))) as c:
        h = signed_in(c, "ana")
        for bid in bids[:2]:
            assert c.post("/api/arena/votes", json={"battle_id": bid, "winner": "a"}, headers=h).status_code == 200
        r = c.post("/api/arena/votes", json={"battle_id": bids[2], "winner": "a"}, headers=h)
        assert r.status_code == 429 and "2 arena votes today" in r.json()["error"]["message"]
    assert store.scalar("SELECT count(*) FROM arena_votes") == 2


def test_a_voter_against_the_crowd_is_flagged_and_only_admins_see_it(store):
    crowd = [add_user(store, f"p{i}", password=None) for i in range(5)] + [add_user(store, "p5")]
    for i, uid in enumerate(crowd):
        for _ in range(15):  # the crowd prefers tiny-lora 14 times out of 15
            _vote(store, uid, f"p{i}", "b")
        _vote(store, uid, f"p{i}", "a")
    troll = add_user(store, "troll", password=None)
    for _ in range(25):
        _vote(store, troll, "troll", "a")
    rows = voters(store)
    assert rows[0]["voter"] == "troll" and rows[0]["flagged"] and rows[0]["z"] < -3
    assert not any(r["flagged"] for r in rows[1:])
    add_user(store, "adm", "admin")
    with TestClient(create_app(store)) as c:
        assert c.get("/api/arena/voters", headers=signed_in(c, "p5")).status_code == 403
        r = c.get("/api/arena/voters", headers=signed_in(c, "adm"))
        assert r.status_code == 200 and r.json()[0]["voter"] == "troll"


def test_leaderboard_per_category(store):
    ana = add_user(store, "ana", password=None)
    for _ in range(4):
        _vote(store, ana, "ana", "a")
    # votes on prompts of another dataset with a category of their own
    pid = store.scalar("SELECT max(prompt_id) FROM arena_votes")
    store.con.execute('UPDATE prompts SET metadata = \'{"category": "código 💻"}\' WHERE id = ?', [pid])
    board = leaderboard(store, bootstrap_rounds=0)
    cats = {c["category"]: c["votes"] for c in board["categories"]}
    assert cats.get("código 💻") == 1 and sum(cats.values()) == 4
    one = leaderboard(store, bootstrap_rounds=0, category="código 💻")
    assert one["n_votes"] == 1 and one["category"] == "código 💻"
