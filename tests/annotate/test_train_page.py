"""The admin Training page against a real server: past runs, live curves, log tail and lineage render."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.data import PASSWORD, add_user

APP = str(Path(__file__).resolve().parents[2] / "annotate" / "streamlit_app.py")


def test_training_page_shows_runs_curves_and_lineage(store, live_server, tmp_path, monkeypatch):
    from db import models_registry, runs

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    records = [
        {"step": s, "loss": 0.7 - s / 100, "learning_rate": 1e-4, "rewards/margins": s / 10, "rewards/accuracies": 1.0}
        for s in range(1, 6)
    ]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    (run_dir / "train.log").write_text("step 5: loss 0.65 ✅ 训练完成\n", encoding="utf-8")
    run_id = runs.create_run(
        store,
        stage="dpo",
        run_dir=str(run_dir),
        base="models/tiny",
        parent=None,
        snapshot_id="ab" * 32,
        config={"beta": 0.1},
        created_by="adm",
    )
    runs.mark_done(store, run_id, "finished", metrics=records[-1])
    models_registry.register_model(
        store,
        name="dpo-page",
        kind="adapter",
        path=str(run_dir / "adapter"),
        base="models/tiny",
        stage="dpo",
        run_id=run_id,
        snapshot_id="ab" * 32,
        created_by="adm",
    )
    add_user(store, "adm", "admin")
    url = live_server().url
    monkeypatch.setenv("PREFLAB_URL", url)
    at = training_page_as_admin()
    assert not at.exception, at.exception
    assert any(m.value == "finished" for m in at.metric)
    assert any("训练完成" in c.value for c in at.code)
    assert any("dpo-page" in c.value for c in at.caption)
    assert list(at.dataframe[0].value["id"]) == [run_id]
    assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")  # the live curves


def test_run_picker_follows_the_run_just_started_and_its_label_stays_current(
    store, live_server, tmp_path, monkeypatch
):
    """Start from the page: the picker selects the new run (not the one shown before), and its label reads the
    status the server has now. No training process: the server's launch is replaced by marking it running."""
    import os

    from db import runs
    from serving.api.runs import RunManager
    from tests.support.training import fake_model_folder, seed_rankings

    fake_model_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PREFLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(
        RunManager, "launch", lambda self, run_id, resume=False: runs.mark_running(self.store, run_id, os.getpid())
    )
    seed_rankings(store)
    old = runs.create_run(store, stage="sft", run_dir=str(tmp_path / "old"), base="models/tiny", parent=None,
                          snapshot_id="cd" * 32, config={}, created_by="adm")  # fmt: skip
    runs.mark_done(store, old, "finished", metrics={})
    add_user(store, "adm", "admin")
    url = live_server().url
    monkeypatch.setenv("PREFLAB_URL", url)
    at = training_page_as_admin()
    assert run_picker(at).value == old
    at.text_input(key="train_base").input("models/tiny")
    at.selectbox(key="train_dataset").set_value("prefs")
    at.button(key="train_start").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    new = store.scalar("SELECT max(id) FROM runs")
    assert new != old
    assert run_picker(at).value == new
    assert f"#{new} dpo · running" in run_picker(at).options
    runs.mark_done(store, new, "finished", metrics={})
    at.run()
    assert run_picker(at).value == new  # still on it
    assert f"#{new} dpo · finished" in run_picker(at).options


def run_picker(at):
    """The Training page's run picker (its key carries a digest of the labels: annotate.picker)."""
    return next(s for s in at.selectbox if s.label == "Run")


def test_a_curve_of_one_logged_step_is_drawn_as_points():
    import json

    from streamlit.testing.v1 import AppTest

    def script():
        import pandas as pd

        from annotate.stats_view import curve

        curve(pd.DataFrame({"loss": [0.69]}, index=pd.Index([1], name="step")))
        curve(pd.DataFrame({"loss": [0.69, 0.6]}, index=pd.Index([1, 2], name="step")))

    at = AppTest.from_function(script).run()
    assert not at.exception, at.exception
    specs = [json.loads(node.proto.spec) for node in at.main.children.values()]
    assert specs[0]["mark"]["type"] == "circle"  # one step: a point that shows
    assert [layer["mark"]["type"] for layer in specs[1]["layer"]][0] == "line"


def training_page_as_admin():
    """The app signed in as adm (PREFLAB_URL set by the test), on the Training page."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60).run()
    at.text_input(key="login_name").input("adm")
    at.text_input(key="login_password").input(PASSWORD)
    at.button(key="login_submit").click().run()
    return at.switch_page("views/training.py").run()


def test_train_stages_route_gives_the_page_its_fields_admin_only(store):
    from fastapi.testclient import TestClient

    from alignment import STAGES
    from serving.api.app import create_app
    from tests.support.data import signed_in

    add_user(store, "adm", "admin")
    add_user(store, "ann", "annotator")
    with TestClient(create_app(store)) as c:
        assert c.get("/api/train/stages").status_code == 401
        assert c.get("/api/train/stages", headers=signed_in(c, "ann")).status_code == 403
        r = c.get("/api/train/stages", headers=signed_in(c, "adm"))
    assert r.status_code == 200, r.text
    stages = {s["stage"]: s for s in r.json()["stages"]}
    assert list(stages) == list(STAGES)
    assert [s for s in STAGES if stages[s]["needs_reward_model"]] == ["ppo", "rloo", "grpo"]
    dpo = {f["name"]: f for f in stages["dpo"]["fields"]}
    assert stages["dpo"]["config_class"] == "DPORunConfig"
    assert dpo["loss_type"]["value"] == "sigmoid" and "ipo" in dpo["loss_type"]["choices"]
    assert dpo["beta"]["value"] == 0.1 and dpo["learning_rate"]["value"] == 5e-5 and dpo["learning_rate"]["help"]
    assert {"learning_rate", "gradient_accumulation_steps", "lora_r", "save_steps"} <= set(dpo)
    assert {f["name"] for f in stages["ppo"]["fields"]} >= {"kl_coef", "cliprange", "max_completion_length"}


def test_training_page_takes_its_fields_and_starting_values_from_the_server(store, live_server, monkeypatch):
    """The page holds no copy of the defaults: change them on the server and the page shows the change."""
    from alignment import STAGES
    from alignment.dpo_config import DPORunConfig

    monkeypatch.setattr(DPORunConfig, "page_values", {**DPORunConfig.page_values, "beta": 0.25, "loss_type": "ipo"})
    add_user(store, "adm", "admin")
    monkeypatch.setenv("PREFLAB_URL", live_server().url)
    at = training_page_as_admin()
    assert not at.exception, at.exception
    assert at.selectbox(key="train_stage").options == list(STAGES)
    assert at.selectbox(key="train_stage").value == "dpo"
    assert at.number_input(key="train_p_dpo_beta").value == 0.25
    assert at.number_input(key="train_p_dpo_learning_rate").value == 5e-5
    assert at.selectbox(key="train_p_dpo_loss_type").value == "ipo"
    assert "sigmoid" in at.selectbox(key="train_p_dpo_loss_type").options
    at.selectbox(key="train_stage").set_value("ppo").run()
    assert at.number_input(key="train_p_ppo_kl_coef").value == 0.05
    assert at.selectbox(key="train_reward_model")  # ppo needs a reward model: the page asks for one
    at.selectbox(key="train_stage").set_value("kto").run()  # thumbs up/down: the stage comes from the server too
    assert not at.exception, at.exception
    assert at.number_input(key="train_p_kto_desirable_weight").value == 1.0
    assert at.number_input(key="train_p_kto_undesirable_weight").value == 1.0
    assert at.selectbox(key="train_p_kto_loss_type").options == ["kto", "apo_zero_unpaired"]
    assert "train_reward_model" not in [s.key for s in at.selectbox]  # kto learns from labels, not a reward model
