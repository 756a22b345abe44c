"""The Annotators page and the Review page's gold section, with AppTest against a real server (`ui_server`).

The "sim" dataset holds rankings of twenty simulated annotators (db.annotator_sim: careful, sloppy and two
spammers, with gold items mixed in), so the table, the charts and the gold flags have something to show.
"""

from __future__ import annotations

import pytest

from db.annotator_sim import SimConfig, simulate
from tests.annotate.test_ui import login
from tests.support.ui_data import DATASET, VISUAL_DATASET

SIM = "sim-质量-ñ"  # a dataset name with CJK and an accent goes through the picker, the API and back


@pytest.fixture(scope="module")
def seeded(ui_server):
    simulate(ui_server.store, SIM, SimConfig(prompts=40))
    simulate(ui_server.store, "solo", SimConfig(prompts=4, gold_prompts=0, kinds=(("careful", 0.1),)))
    return ui_server


def open_page(name: str, dataset: str):
    at = login(name)
    at.switch_page("views/annotators.py").run()
    assert not at.exception, at.exception
    at.selectbox(key="annotators_dataset").set_value(dataset).run()
    assert not at.exception, at.exception
    return at


def charts(at) -> list:
    return [*at.get("vega_lite_chart"), *at.get("arrow_vega_lite_chart")]


def test_table_charts_and_numbers_for_many_annotators(seeded):
    at = open_page("rev", SIM)
    assert [t.value for t in at.title] == ["Annotators"]
    table = at.dataframe[0].value
    assert len(table) == 20
    want = {"flag", "annotator", "quality", "pair_agreement", "pairs_compared", "tau_b", "gold_accuracy", "gold_items"}
    want |= {"median_seconds", "too_fast", "position_bias", "tie_rate", "all_bad_rate", "weight"}
    assert want <= set(table.columns), table.columns
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Annotators"] == "20" and metrics["Paused"] == "0"
    assert len(metrics["Median quality"]) == 4  # "0.87": two decimals
    # the scatter of speed against agreement and the per-day series
    assert len(charts(at)) == 2
    # the spammers have the lowest quality: first in the picker for the controls
    assert at.selectbox(key="annotators_pick").value.startswith("spammer")
    for measure in ("pair_agreement", "tau_b"):
        at.radio(key="annotators_measure").set_value(measure).run()
        assert not at.exception and len(charts(at)) == 2
    at.radio(key="annotators_series_measure").set_value("median_seconds").run()
    assert not at.exception and len(charts(at)) == 2


def test_pause_stops_new_items_and_resume_gives_them_back(seeded):
    with seeded.api("ann") as api:  # ann ranks one prompt, then gives back the item that came next
        item = api.get("/api/queue/next", params={"dataset": DATASET}).json()["item"]
        ranks = {str(a["id"]): i + 1 for i, a in enumerate(item["answers"])}
        done = api.post("/api/rankings", json={"assignment_id": item["assignment_id"], "ranks": ranks}).json()
        if done["next"]["item"]:
            api.post(f"/api/assignments/{done['next']['item']['assignment_id']}/release")
    at = open_page("rev", DATASET)
    at.selectbox(key="annotators_pick").set_value("ann").run()
    at.button(key="annotators_pause").click().run()
    assert not at.exception, at.exception
    assert any("ann paused" in s.value for s in at.success), [e.value for e in at.error]
    assert at.dataframe[0].value.set_index("annotator").loc["ann", "flag"] == "⏸"
    with seeded.api("ann") as api:
        r = api.get("/api/queue/next", params={"dataset": DATASET})
        assert r.status_code == 403 and "paused" in r.json()["error"]["message"]
    at.button(key="annotators_resume").click().run()
    assert any("ann resumed" in s.value for s in at.success)
    with seeded.api("ann") as api:
        assert api.get("/api/queue/next", params={"dataset": DATASET}).status_code == 200


def test_weight_slider_sets_the_annotators_weight(seeded):
    at = open_page("adm", SIM)
    name = at.selectbox(key="annotators_pick").value
    at.slider(key=f"annotators_weight_{SIM}_{name}").set_value(0.0).run()
    at.button(key="annotators_save_weight").click().run()
    assert not at.exception, at.exception
    assert any("weight" in s.value and "0.00" in s.value for s in at.success)
    weight = seeded.store.scalar(
        "SELECT c.weight FROM annotator_controls c JOIN users u ON u.id = c.user_id WHERE u.name = ?", [name]
    )
    assert weight == 0.0
    assert at.dataframe[0].value.set_index("annotator").loc[name, "weight"] == 0.0


def test_empty_states_say_why(seeded):
    at = open_page("rev", VISUAL_DATASET)
    assert any("No rankings" in i.value for i in at.info), [i.value for i in at.info]
    assert not at.dataframe
    at.selectbox(key="annotators_dataset").set_value("solo").run()
    assert any("Only one annotator" in i.value for i in at.info), [i.value for i in at.info]
    table = at.dataframe[0].value
    assert len(table) == 1
    assert table["pair_agreement"].isna().all()  # not measured: shown as a dash, never as 0


def test_annotator_has_no_annotators_page_and_the_routes_refuse(seeded):
    at = login("ann2")
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("views/annotators.py")
    with seeded.api("ann2") as api:
        assert api.get("/api/annotators", params={"dataset": SIM}).status_code == 403
        assert api.post("/api/annotators/ann2/controls", json={"dataset": SIM, "paused": False}).status_code == 403
        assert api.get("/api/gold", params={"dataset": SIM}).status_code == 403


def test_review_marks_a_prompt_gold_and_unmarks_it(seeded):
    at = login("rev")
    at.switch_page("views/review.py").run()
    at.selectbox(key="review_dataset").set_value(DATASET).run()
    prompt_id = at.session_state["review_prompt"]
    assert any(f"#{prompt_id} is not a gold item" in c.value for c in at.caption)
    assert any("Keyboard: Tab to an answer's picker" in c.value for c in at.caption)
    # the whole order refuses half-ranked cards
    at.segmented_control(key=f"adj_{prompt_id}_0").set_value(1).run()
    at.button(key="review_gold_mark").click().run()
    assert any("Rank every answer" in e.value for e in at.error)
    assert seeded.store.scalar("SELECT count(*) FROM gold_items WHERE prompt_id = ?", [prompt_id]) == 0
    for i, rank in enumerate([1, 3, 2]):
        at.segmented_control(key=f"adj_{prompt_id}_{i}").set_value(rank)
    at.run()
    at.button(key="review_gold_mark").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("is a gold item (whole order)" in s.value for s in at.success)
    known = seeded.store.query("SELECT generation_id, rank FROM gold_answers WHERE prompt_id = ?", [prompt_id])
    assert sorted(r["rank"] for r in known) == [1, 2, 3]
    # only the best answer: the one ranked 1
    at.radio(key="review_gold_kind").set_value("best").run()
    at.button(key="review_gold_mark").click().run()
    assert seeded.store.scalar("SELECT kind FROM gold_items WHERE prompt_id = ?", [prompt_id]) == "best"
    # the dataset's gold rate
    at.number_input(key=f"review_gold_rate_{DATASET}").set_value(10.0).run()
    at.button(key="review_gold_rate_save").click().run()
    assert any("10.0%" in s.value for s in at.success)
    with seeded.api("rev") as api:
        assert api.get("/api/gold", params={"dataset": DATASET}).json()["rate"] == pytest.approx(0.1)
    at.button(key="review_gold_unmark").click().run()
    assert any("ordinary prompt again" in s.value for s in at.success)
    assert seeded.store.scalar("SELECT count(*) FROM gold_items WHERE prompt_id = ?", [prompt_id]) == 0
