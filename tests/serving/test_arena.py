"""Arena: ratings recover a known order, identity-leak flags, and battles -> votes -> arena pairs -> export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from serving.arena.battles import detect_identity_leak
from serving.arena.ratings import SCALE, RatingsConfig, compute_leaderboard, leaderboard_from_arrays
from tests.support.data import PASSWORD, add_user, signed_in

APP = str(Path(__file__).resolve().parents[2] / "annotate" / "streamlit_app.py")


def synthetic_votes(strengths: np.ndarray, n: int, seed: int = 0, tie_rate: float = 0.1):
    rng = np.random.default_rng(seed)
    k = len(strengths)
    a = rng.integers(0, k, n)
    b = (a + rng.integers(1, k, n)) % k
    p = 1 / (1 + np.exp(-(strengths[a] - strengths[b])))
    u = rng.random(n)
    s = np.where(u < tie_rate, 0.5, np.where(rng.random(n) < p, 1.0, 0.0))
    return a, b, s


def test_bradley_terry_recovers_the_true_order_with_sensible_intervals():
    true = np.array([0.0, 0.4, 0.8, 1.2, 1.6, 2.0])  # log-strengths; model i is better than i-1
    names = [f"m{i}" for i in range(len(true))]
    a, b, s = synthetic_votes(true, 20_000)
    board = leaderboard_from_arrays(names, a, b, s, RatingsConfig(bootstrap_rounds=300, seed=1))
    assert [r["model"] for r in board.rows] == names[::-1]
    want = 1000 + SCALE * (true - true.mean())  # ratings are centred: compare on the same scale
    for row in board.rows:
        i = names.index(row["model"])
        assert row["ci_low"] < row["rating"] < row["ci_high"]
        assert row["ci_low"] - 25 <= want[i] <= row["ci_high"] + 25, (row, want[i])
    # more votes -> narrower intervals; Elo agrees on the order at the ends
    small = leaderboard_from_arrays(names, a[:1000], b[:1000], s[:1000], RatingsConfig(bootstrap_rounds=300))
    width = {r["model"]: r["ci_high"] - r["ci_low"] for r in board.rows}
    assert all(r["ci_high"] - r["ci_low"] > width[r["model"]] for r in small.rows)
    elo = {r["model"]: r["elo"] for r in board.rows}
    assert elo["m5"] > elo["m0"]
    # the win-rate matrix: i over j plus j over i is one where they met
    w, g = np.array(board.winrate, dtype=float), np.array(board.games)
    met = g > 0
    assert np.allclose((w + w.T)[met], 1.0)


def test_ties_count_half_and_a_winless_model_stays_finite():
    votes = [{"model_a": "x", "model_b": "y", "winner": "tie"}] * 10
    board = compute_leaderboard(votes, RatingsConfig(bootstrap_rounds=50))
    assert abs(board.rows[0]["rating"] - board.rows[1]["rating"]) < 1e-6
    assert board.rows[0]["ties"] == 10 and board.winrate[0][1] == 0.5
    votes = [{"model_a": "x", "model_b": "y", "winner": "a"}] * 5 + [
        {"model_a": "z", "model_b": "y", "winner": "b"}
    ] * 5
    board = compute_leaderboard(votes, RatingsConfig(bootstrap_rounds=50))
    ratings = {r["model"]: r["rating"] for r in board.rows}
    assert ratings["x"] > ratings["y"] > ratings["z"] and np.isfinite(list(ratings.values())).all()
    assert compute_leaderboard([]).rows == []


def test_identity_leak_detection():
    names = ["tiny", "qwen2.5-sft-7"]
    assert detect_identity_leak("As an AI developed by OpenAI, I am ChatGPT.", names) == ["chatgpt", "openai"]
    assert detect_identity_leak("I am Qwen2, made by Alibaba.", names) == ["qwen"]
    assert "qwen2.5-sft-7" in detect_identity_leak("Model qwen2.5-sft-7 here", names)
    assert detect_identity_leak("Llamas live in the Andes; a tiny gptx-free answer.", names) == []
    assert detect_identity_leak("Soy Claude.", ["a", "b"]) == ["claude"]
    assert detect_identity_leak("My name is blue-falcon-9", ["blue-falcon-9", "other"])  # its own registered name


@pytest.fixture(scope="module")
def arena_env(tiny_hf_engine, serve_app, tmp_path_factory):
    """The session's engine (tiny + tiny-lora) registered here, and the server app (in-process and on a port)."""
    from fastapi.testclient import TestClient

    from db.store import Store
    from serving.api.app import create_app
    from serving.engines.registry import save_engine

    home = tmp_path_factory.mktemp("arena-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFLAB_HOME", str(home))
        save_engine(tiny_hf_engine)
        store = Store.open(home / "arena.duckdb")
        try:
            add_user(store, "ana")
            app = create_app(store)
            client = TestClient(app)
            live = serve_app(app, store=store)  # a real HTTP server too, for the Streamlit pages
            mp.setenv("PREFLAB_URL", live.url)
            yield store, client, signed_in(client, "ana"), home
            live.stop()
        finally:
            store.close()


PARAMS = {"max_tokens": 6, "seed": 11, "temperature": 0.8}


def test_battle_vote_reveal_and_arena_pairs(arena_env, tmp_path, run_cli):
    store, client, auth, home = arena_env
    from serving.rag import ingest_paths

    doc = tmp_path / "moon.md"
    doc.write_text(
        "# Moon\n\nThe Moon is about 384,400 km from Earth.\n\n# Mars\n\nMars has two moons.\n", encoding="utf-8"
    )
    ingest_paths(store, [doc], collection="space")
    assert client.get("/api/arena/models", headers=auth).json()["models"] == ["tiny", "tiny-lora"]
    assert client.post("/api/arena/battles", json={}).status_code == 401
    r = client.post("/api/arena/battles", json={"rag": {"collection": "space", "k": 1}}, headers=auth)
    assert r.status_code == 200, r.text
    battle = r.json()
    assert set(battle) == {"battle_id", "rag"}  # no model names before the vote
    bid = battle["battle_id"]
    r = client.post(
        f"/api/arena/battles/{bid}/turn", json={"message": "How far is the Moon?", "params": PARAMS}, headers=auth
    )
    assert r.status_code == 200, r.text
    turn = r.json()
    assert "model" not in turn["a"] and "tiny" not in json.dumps(turn)
    assert turn["context"][0]["source"] == str(doc.resolve()) and "384,400" in turn["context"][0]["text"]
    stored = store.query("SELECT turns FROM arena_battles WHERE id = ?", [bid])[0]["turns"]
    t1 = json.loads(stored)[0]
    assert "384,400" in t1["content"] and t1["content"].index("Background") < t1["content"].index("Question")
    # a second turn, streamed: tokens of both sides arrive, then the stored turn; same context for both sides
    with client.stream(
        "POST",
        f"/api/arena/battles/{bid}/turn",
        headers=auth,
        json={"message": "And Mars?", "stream": True, "params": PARAMS},
    ) as resp:
        assert resp.status_code == 200
        events = [json.loads(line[5:]) for line in resp.iter_lines() if line.startswith("data:")]
    assert "Mars has two moons" in events[0]["context"][0]["text"]
    assert {e["side"] for e in events if "delta" in e} == {"a", "b"}
    assert events[-1]["done"] and events[-1]["turn"]["turn"] == 2
    r = client.post("/api/arena/votes", json={"battle_id": bid, "winner": "a"}, headers=auth)
    assert r.status_code == 200, r.text
    reveal = r.json()
    last = events[-1]["turn"]
    assert {reveal["model_a"], reveal["model_b"]} == {"tiny", "tiny-lora"}
    assert reveal["ranking_id"], (reveal, last["a"]["text"], last["b"]["text"])
    assert client.post("/api/arena/votes", json={"battle_id": bid, "winner": "b"}, headers=auth).status_code == 409
    pair = store.query(
        "SELECT p.source, p.is_tie, c.model AS chosen, c.kind FROM pairs p "
        "JOIN generations c ON c.id = p.chosen_id WHERE p.ranking_id = ?",
        [reveal["ranking_id"]],
    )
    assert pair == [{"source": "arena", "is_tie": False, "chosen": reveal["model_a"], "kind": "arena"}]
    # tie and both-bad battles
    for winner in ("tie", "both_bad"):
        bid = client.post("/api/arena/battles", json={"models": ["tiny", "tiny-lora"]}, headers=auth).json()[
            "battle_id"
        ]
        client.post(
            f"/api/arena/battles/{bid}/turn", json={"message": f"Say {winner} 你好", "params": PARAMS}, headers=auth
        ).raise_for_status()
        client.post("/api/arena/votes", json={"battle_id": bid, "winner": winner}, headers=auth).raise_for_status()
    rankings = store.query(
        "SELECT all_bad, list(i.rank ORDER BY i.position) AS ranks FROM rankings r "
        "JOIN ranking_items i ON i.ranking_id = r.id WHERE r.source = 'arena' "
        "GROUP BY r.id, all_bad ORDER BY r.id"
    )
    assert [r["ranks"] for r in rankings][-2:] == [[1, 1], [1, 1]] and rankings[-1]["all_bad"]
    assert store.scalar("SELECT count(*) FROM arena_votes") == 3
    board = client.get("/api/arena/leaderboard", params={"bootstrap_rounds": 50}, headers=auth).json()
    assert {r["model"] for r in board["rows"]} == {"tiny", "tiny-lora"} and board["n_votes"] == 3
    # a flagged battle is left out on request
    store.con.execute("UPDATE arena_votes SET identity_leak = true WHERE id = 1")
    board = client.get(
        "/api/arena/leaderboard", params={"exclude_flagged": True, "bootstrap_rounds": 0}, headers=auth
    ).json()
    assert board["n_votes"] == 2 and board["flagged"] == 1
    # arena pairs export like annotation pairs
    n_pairs = store.scalar("SELECT count(*) FROM pairs WHERE source = 'arena' AND NOT is_tie")
    store.close()  # the CLI opens the file itself
    try:
        out = tmp_path / "arena.jsonl"
        r = run_cli("--db", home / "arena.duckdb", "export", "--format", "trl", "--out", out, "--source", "arena")
    finally:
        store.__init__(home / "arena.duckdb")
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == n_pairs >= 1
    assert "384,400" in json.dumps(rows[0], ensure_ascii=False)  # the prompt carries the RAG context


def test_arena_and_leaderboard_pages(arena_env):
    from streamlit.testing.v1 import AppTest

    store, _, _, _ = arena_env
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.text_input(key="login_name").input("ana")
    at.text_input(key="login_password").input(PASSWORD)
    at.button(key="login_submit").click().run()
    at.switch_page("views/arena.py").run()
    assert not at.exception, at.exception
    at.slider(key="arena_max_tokens").set_value(16).run()  # short answers keep the test quick
    at.chat_input(key="arena_input").set_value("Name a color 🎨").run()
    assert not at.exception, at.exception
    shown = "\n".join(m.value for m in at.markdown)
    assert "**Model A**" in shown and "**Model B**" in shown and "Name a color 🎨" in shown
    before = store.scalar("SELECT count(*) FROM arena_votes")
    at.button(key="arena_vote_b").click().run()
    assert not at.exception, at.exception
    assert store.scalar("SELECT count(*) FROM arena_votes") == before + 1
    assert any("Model A was **tiny" in s.value for s in at.success)
    at.switch_page("views/leaderboard.py").run()
    assert not at.exception, at.exception
    assert {"tiny", "tiny-lora"} <= set(at.dataframe[0].value["model"])


def test_leaderboard_cli(run_cli, store):
    from db.arena import list_votes

    assert list_votes(store) == []
    r = run_cli("arena", "leaderboard", "--rounds", "10")
    assert r.exit_code == 0 and "0 votes" in r.output


def _battle_with_a_turn(store, owner_id: int, owner: str, text_a="Rojo 🟥", text_b="蓝色") -> int:
    """A battle of `owner` with one stored turn, as the loop writes them (no engine needed)."""
    from db import arena as arena_db

    bid = arena_db.create_battle(store, "tiny", "tiny-lora", created_by=owner, user_id=owner_id)
    msgs = [{"role": "user", "content": "¿Color? 🎨"}]
    turn = {"user": "¿Color? 🎨", "content": "¿Color? 🎨", "messages_a": msgs, "context": []}
    arena_db.save_turns(store, bid, [{**turn, "a": {"text": text_a}, "b": {"text": text_b}}], False)
    return bid


def test_a_battle_belongs_to_its_user_and_ids_are_not_sequential(store):
    from fastapi.testclient import TestClient

    from serving.api.app import create_app

    ana, bob = add_user(store, "ana"), add_user(store, "bob")
    bids = [_battle_with_a_turn(store, ana, "ana") for _ in range(5)]
    assert len(set(bids)) == 5 and all(0 < b < 2**53 for b in bids)
    assert sorted(bids) != list(range(min(bids), min(bids) + 5))  # not the next number in a sequence
    with TestClient(create_app(store)) as c:
        h_ana, h_bob = signed_in(c, "ana"), signed_in(c, "bob")
        bid = bids[0]
        # bob can neither chat in, vote in, nor learn the models of ana's battle, and ana is not locked out
        r = c.post(f"/api/arena/battles/{bid}/turn", json={"message": "hola"}, headers=h_bob)
        assert r.status_code == 404 and "tiny" not in r.text, r.text
        r = c.post("/api/arena/votes", json={"battle_id": bid, "winner": "a"}, headers=h_bob)
        assert r.status_code == 404 and "tiny" not in r.text, r.text
        assert store.scalar("SELECT count(*) FROM arena_votes") == 0
        r = c.post("/api/arena/votes", json={"battle_id": bid, "winner": "a"}, headers=h_ana)
        assert r.status_code == 200, r.text
        assert {r.json()["model_a"], r.json()["model_b"]} == {"tiny", "tiny-lora"}
    assert store.scalar("SELECT user_id FROM arena_votes") == ana != bob


def test_the_loop_judges_votes_stay_off_the_human_leaderboard(store, run_cli):
    from serving.arena.battles import leaderboard
    from serving.loop import store_votes as _store_votes

    ana = add_user(store, "ana", password=None)
    from db import arena as arena_db

    for _ in range(3):  # people prefer tiny-lora...
        arena_db.record_vote(store, _battle_with_a_turn(store, ana, "ana"), "b", user={"id": ana, "name": "ana"})
    judged = [  # ...the rule-based judge prefers tiny, 8 times
        {
            "prompt": f"¿{i}?",
            "model_a": "tiny",
            "model_b": "tiny-lora",
            "text_a": f"sí {i}",
            "text_b": f"no {i}",
            "winner": "a",
        }
        for i in range(8)
    ]
    _store_votes(store, judged, engine="e", dataset="loop-heldout")
    human = leaderboard(store, bootstrap_rounds=0)
    assert human["n_votes"] == 3 and human["source"] == "human"
    assert [r["model"] for r in human["rows"]] == ["tiny-lora", "tiny"]
    synthetic = leaderboard(store, bootstrap_rounds=0, source="synthetic")
    assert synthetic["n_votes"] == 8 and [r["model"] for r in synthetic["rows"]] == ["tiny", "tiny-lora"]
    assert leaderboard(store, bootstrap_rounds=0, source="all")["n_votes"] == 11
    r = run_cli("arena", "leaderboard", "--rounds", "0", "--source", "synthetic")
    assert r.exit_code == 0 and "8 votes (synthetic" in r.output, r.output


def test_the_loop_arena_records_which_answers_came_from_an_adapter(store, tmp_path):
    import pyarrow.parquet as pq

    from db.export import export
    from serving.loop import store_votes as _store_votes

    judged = [
        {"prompt": f"¿{i}? 🙂", "model_a": "tiny", "model_b": "tiny-r1-dpo", "text_a": f"sí {i}", "text_b": f"否 {i}"}
        | {"winner": "a" if i % 2 else "b"}
        for i in range(4)
    ]
    _store_votes(store, judged, engine="e", dataset="loop-heldout", adapters={"tiny-r1-dpo"})
    rows = store.con.execute("SELECT model, adapter, engine FROM generations ORDER BY model").fetchall()
    assert set(rows) == {("tiny", None, "e"), ("tiny-r1-dpo", "tiny-r1-dpo", "e")}
    table = pq.read_table(export(store, "parquet", tmp_path / "arena.parquet", source="arena").path).to_pylist()
    assert len(table) == 4
    for row in table:
        for side in ("chosen", "rejected"):
            want = "tiny-r1-dpo" if row[f"{side}_model"] == "tiny-r1-dpo" else None
            assert row[f"{side}_adapter"] == want and row[f"{side}_engine"] == "e"
