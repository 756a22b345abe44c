"""Richer feedback in the UI: aspect ratings and a rationale on the Rank page, a 'rate' task with thumbs, thumbs
under arena answers after the vote, and the Admin page's editor of a dataset's annotation settings.

AppTest against the real server of the `ui_server` fixture (tests/conftest.py), as in test_ui.py. The tests of this
module share one server; the settings each needs are set in `configured` (or by the test itself) through the API.
"""

from __future__ import annotations

import pytest

from tests.annotate.test_ui import login, texts
from tests.support.ui_data import DATASET, VISUAL_DATASET

ASPECTS = [
    {"name": "helpfulness", "min": 0, "max": 4, "required": True, "description": "¿Ayuda de verdad? 有帮助吗"},
    {"name": "verbosity", "min": 0, "max": 4, "required": False, "description": "Too long or too short 📏"},
]


@pytest.fixture(scope="module")
def configured(ui_server):
    """DATASET ranks with two aspects (one required) and a required rationale; VISUAL_DATASET is a 'rate' task."""
    with ui_server.api("adm") as api:
        r = api.put(f"/api/datasets/{DATASET}/settings", json={"aspects": ASPECTS, "rationale": "required"})
        assert r.status_code == 200, r.text
        r = api.put(f"/api/datasets/{VISUAL_DATASET}/settings", json={"task": "rate"})
        assert r.status_code == 200, r.text
    return ui_server


def _ratings(server, ranking_id: int) -> dict:
    rows = server.store.query("SELECT generation_id, aspect, value FROM ratings WHERE ranking_id = ?", [ranking_id])
    out: dict = {}
    for row in rows:
        out.setdefault(row["generation_id"], {})[row["aspect"]] = row["value"]
    return out


def _rank_all(at, aid: int, k: int) -> None:
    for i in range(k):
        at.segmented_control(key=f"rank_{aid}_{i}").set_value(i + 1)


def test_a_dataset_without_aspects_keeps_the_plain_page(ui_server):
    # first in the module, before `configured` gives DATASET its aspects
    at = login("rev")
    item = at.session_state["rank_queue"]["item"]
    aid = item["assignment_id"]
    assert (item["task"], item["aspects"], item["rationale"]) == ("rank", [], "off")
    assert not [t for t in at.text_area if t.key == f"rank_{aid}_rationale"]
    assert not [s for s in at.segmented_control if "_asp_" in (s.key or "") or "_thumb_" in (s.key or "")]
    assert "aspect" not in texts(at) and at.button(key="rank_submit").label == "Submit ranking"


def test_required_aspects_and_rationale_are_asked_for_then_stored(configured):
    server = configured
    at = login("ann")
    item = at.session_state["rank_queue"]["item"]
    aid, answers = item["assignment_id"], [a["id"] for a in item["answers"]]
    assert [a["name"] for a in item["aspects"]] == ["helpfulness", "verbosity"] and item["rationale"] == "required"
    labels = [c.label for c in at.segmented_control if "_asp_0_" in c.key]
    assert labels == ["helpfulness :red[\\*]", "verbosity"], labels  # the required one starred
    assert "**A** moves to the answer's next aspect" in texts(at)
    assert at.text_area(key=f"rank_{aid}_rationale").label == "Why this order? (required)"
    before = server.store.scalar("SELECT count(*) FROM rankings")

    _rank_all(at, aid, len(answers))
    at.run()
    at.button(key="rank_submit").click().run()
    errors = [e.value for e in at.error]
    assert any("Still needed" in e and "Answer 1: helpfulness" in e and "the rationale" in e for e in errors), errors
    assert server.store.scalar("SELECT count(*) FROM rankings") == before  # nothing was sent

    for pos in range(len(answers)):
        at.segmented_control(key=f"rank_{aid}_asp_{pos}_0").set_value(4 - pos)
    at.segmented_control(key=f"rank_{aid}_asp_0_1").set_value(1)
    at.run()
    at.button(key="rank_submit").click().run()
    assert any("the rationale" in e.value and "helpfulness" not in e.value for e in at.error)
    at.text_area(key=f"rank_{aid}_rationale").input("La primera es más clara. 第一个更清楚 ✅")
    at.button(key="rank_submit").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]

    ranking = server.store.query(
        "SELECT r.id FROM rankings r JOIN users u ON u.id = r.user_id WHERE u.name = 'ann' AND r.prompt_id = ?",
        [item["prompt"]["id"]],
    )[0]["id"]
    expected = {gid: {"helpfulness": 4 - pos} for pos, gid in enumerate(answers)}
    expected[answers[0]]["verbosity"] = 1
    assert _ratings(server, ranking) == expected
    note = server.store.scalar("SELECT rationale FROM ranking_notes WHERE ranking_id = ?", [ranking])
    assert note == "La primera es más clara. 第一个更清楚 ✅"
    assert at.session_state["rank_queue"]["item"]["assignment_id"] != aid  # on to the next prompt


def test_rate_task_asks_for_thumbs_on_every_answer_and_stores_them(configured):
    server = configured
    at = login("ann2")
    at.selectbox(key="rank_dataset").set_value(VISUAL_DATASET).run()
    item = at.session_state["rank_queue"]["item"]
    assert item["task"] == "rate"
    aid, answers = item["assignment_id"], [a["id"] for a in item["answers"]]
    assert not [s for s in at.segmented_control if s.key == f"rank_{aid}_0"]  # no rank pickers
    assert at.button(key="rank_submit").label == "Submit ratings"

    at.segmented_control(key=f"rank_{aid}_thumb_0").set_value(True).run()
    at.button(key="rank_submit").click().run()
    errors = [e.value for e in at.error]
    assert any("thumbs up or down for answer 2" in e for e in errors), errors
    assert server.store.scalar("SELECT count(*) FROM feedback") == 0

    at.segmented_control(key=f"rank_{aid}_thumb_1").set_value(False).run()
    assert any("👍 Answer 1 · 👎 Answer 2" in m.value for m in at.markdown), texts(at)
    at.button(key="rank_submit").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    rows = server.store.query(
        "SELECT f.generation_id, f.label, f.source FROM feedback f JOIN users u ON u.id = f.user_id "
        "WHERE u.name = 'ann2' ORDER BY f.generation_id"
    )
    assert {r["generation_id"]: (r["label"], r["source"]) for r in rows} == {
        answers[0]: (True, "human"),
        answers[1]: (False, "human"),
    }


def test_arena_thumbs_after_the_vote_and_a_second_click_changes_it(configured, monkeypatch):
    from db import arena as arena_db
    from serving.arena import battles

    server = configured
    monkeypatch.setattr(battles, "available_models", lambda: ["tiny", "tiny-lora"])  # no engine in this test
    uid = server.store.scalar("SELECT id FROM users WHERE name = 'ann'")
    bid = arena_db.create_battle(server.store, "tiny", "tiny-lora", created_by="ann", user_id=uid)
    msgs = [{"role": "user", "content": "¿Color favorito? 🎨"}]
    turn = {"user": msgs[0]["content"], "content": msgs[0]["content"], "messages_a": msgs, "context": []}
    turn = {**turn, "a": {"text": "Rojo 🟥"}, "b": {"text": "蓝色"}}
    arena_db.save_turns(server.store, bid, [turn], False)

    at = login("ann")
    at.session_state["arena_battle"] = bid
    at.session_state["arena_turns"] = [turn]
    at.switch_page("views/arena.py").run()
    assert not at.exception, at.exception
    assert not [s for s in at.segmented_control if "_thumb_" in (s.key or "")]  # no thumbs before the vote
    at.button(key="arena_vote_a").click().run()
    assert not at.exception, at.exception
    at.segmented_control(key=f"arena_{bid}_thumb_b").set_value(False).run()
    assert not at.error, [e.value for e in at.error]
    assert any("Saved: 👎 Bad" in c.value for c in at.caption)

    def stored() -> list[tuple]:
        rows = server.store.query(
            "SELECT f.label, f.source, g.text FROM feedback f JOIN users u ON u.id = f.user_id "
            "JOIN generations g ON g.id = f.generation_id WHERE u.name = 'ann' AND f.source = 'arena'"
        )
        return [(r["label"], r["source"], r["text"]) for r in rows]

    assert stored() == [(False, "arena", "蓝色")]  # model B's answer
    at.segmented_control(key=f"arena_{bid}_thumb_b").set_value(True).run()
    assert stored() == [(True, "arena", "蓝色")]  # replaced, not added
    assert at.segmented_control(key=f"arena_{bid}_thumb_b").value is True


def test_admin_edits_task_aspects_and_rationale_and_sees_server_errors(configured, monkeypatch):
    import annotate.settings_editor as editor

    server = configured
    name = "ajustes-ui 🛠"
    with server.api("adm") as api:
        assert api.post("/api/datasets", json={"name": name}).status_code == 201
    at = login("adm")
    at.switch_page("views/admin.py").run()
    at.selectbox(key="admin_ds").set_value(name).run()
    assert not at.exception, at.exception
    at.button(key="admin_set_preset").click().run()
    assert not at.error, [e.value for e in at.error]
    with server.api("adm") as api:
        got = api.get(f"/api/datasets/{name}/settings").json()
    assert [a["name"] for a in got["aspects"]] == [
        "helpfulness",
        "correctness",
        "coherence",
        "complexity",
        "verbosity",
    ]

    at.radio(key=f"admin_set_task_{name}").set_value("rate")
    at.radio(key=f"admin_set_rationale_{name}").set_value("optional")
    at.radio(key=f"admin_set_selection_{name}").set_value("uncertainty")
    at.button(key="admin_set_save").click().run()
    assert not at.error, [e.value for e in at.error]
    with server.api("adm") as api:
        got = api.get(f"/api/datasets/{name}/settings").json()
    assert (got["task"], got["rationale"], len(got["aspects"])) == ("rate", "optional", 5)
    assert got["selection"] == "uncertainty"
    # the priorities are recomputed by the server; with nothing ranked yet it says why
    at.button(key=f"admin_set_prioritize_{name}").click().run()
    errors = [e.value for e in at.error]
    assert any("Not recomputed" in e and "no ranked pairs yet" in e for e in errors), errors

    # the table's rows go to the server as they are; its refusal shows under the table, naming the field
    bad = [{"name": "claridad", "min": 4, "max": 1, "description": "", "required": False}]
    monkeypatch.setattr(editor, "aspects_from_rows", lambda rows: bad)
    at.button(key="admin_set_save").click().run()
    errors = [e.value for e in at.error]
    assert any("Not saved" in e and "aspects[0].max" in e for e in errors), errors
    with server.api("adm") as api:
        assert len(api.get(f"/api/datasets/{name}/settings").json()["aspects"]) == 5  # unchanged

    at.button(key="admin_set_clear").click().run()
    with server.api("adm") as api:
        assert api.get(f"/api/datasets/{name}/settings").json()["aspects"] == []


def test_aspects_from_rows_drops_blank_rows_and_keeps_numbers_whole():
    from annotate.settings_editor import aspects_from_rows

    rows = [
        {"name": " claridad ", "min": 0.0, "max": 4.0, "description": None, "required": True},
        {"name": None, "min": 0.0, "max": 4.0, "description": None, "required": None},
        {"name": "tono 🎵", "min": 1.0, "max": 2.5, "description": "Amable", "required": None},
    ]
    assert aspects_from_rows(rows) == [
        {"name": "claridad", "min": 0, "max": 4, "description": "", "required": True},
        {"name": "tono 🎵", "min": 1, "max": 2.5, "description": "Amable", "required": False},
    ]


def test_stats_print_alpha_per_aspect(configured, monkeypatch):
    from click.testing import CliRunner

    from serving.cli import cli

    monkeypatch.setenv("PREFLAB_TOKEN", configured.token("rev"))
    result = CliRunner().invoke(cli, ["stats", "--dataset", DATASET])
    assert result.exit_code == 0, result.output
    assert "Krippendorff alpha (interval)" in result.output
    assert "helpfulness" in result.output and "feedback (thumbs)" in result.output


def test_a_server_refusal_shows_under_the_control_it_names(configured):
    server = configured
    at = login("ann")
    at.selectbox(key="rank_dataset").set_value(DATASET).run()  # the admin test added a dataset listed first
    item = at.session_state["rank_queue"]["item"]
    aid, k = item["assignment_id"], len(item["answers"])
    _rank_all(at, aid, k)
    for pos in range(k):
        at.segmented_control(key=f"rank_{aid}_asp_{pos}_0").set_value(2)
    at.segmented_control(key=f"rank_{aid}_asp_1_1").set_value(3)
    at.text_area(key=f"rank_{aid}_rationale").input("Bien.")
    at.run()
    with server.api("adm") as api:  # meanwhile an admin drops the aspect this page still shows
        r = api.put(f"/api/datasets/{DATASET}/settings", json={"aspects": ASPECTS[:1]})
        assert r.status_code == 200, r.text
    before = server.store.scalar("SELECT count(*) FROM rankings")
    at.button(key="rank_submit").click().run()
    assert not at.exception, at.exception
    gid = item["answers"][1]["id"]
    errors = [e.value for e in at.error]
    assert any("Not saved" in e and f"ratings.{gid}.verbosity" in e for e in errors), errors
    assert len(errors) >= 2  # one under the submit, one under Answer 2's verbosity row
    assert server.store.scalar("SELECT count(*) FROM rankings") == before
