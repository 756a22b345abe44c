"""Runs around the trainers: exported snapshots train as they are, cancel + resume, the CLI, the server API."""

from __future__ import annotations

import json
import threading
import time

import pytest
import torch

from alignment.job import prepare_run, run_job
from alignment.runs import StopSignal, last_checkpoint, read_metrics
from tests.support.training import FAST, PAIRS, fake_model_folder, lora_b, seed_rankings, write_jsonl


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("fmt", "stage"), [("trl", "dpo"), ("trl-messages", "dpo"), ("trl", "reward"), ("sft", "sft")]
)
def test_exported_snapshots_train_without_conversion(fmt, stage, store, tmp_path, tiny_model_dir):
    from db.export import export

    seed_rankings(store)
    result = export(store, fmt, tmp_path / f"{fmt}.jsonl", dataset="prefs")
    run_dir = tmp_path / "run"
    cfg = prepare_run(
        stage, run_dir, values={**FAST, "base": str(tiny_model_dir), "data": str(result.path), "max_length": 48}
    )
    assert cfg.snapshot_id == result.snapshot_id  # the export's id, read from its snapshot.json
    assert run_job(run_dir)["status"] == "finished"
    assert any(v.abs().max() > 0 for v in lora_b(run_dir / "adapter").values())


def test_cancel_saves_a_checkpoint_and_resume_continues_from_it(tmp_path, tiny_model_dir):
    rows = [{"messages": [*p["prompt"], *p["chosen"]]} for p in PAIRS]
    data = write_jsonl(tmp_path / "sft.jsonl", rows)
    run_dir = tmp_path / "run"
    prepare_run(
        "sft",
        run_dir,
        values={
            **FAST,
            "base": str(tiny_model_dir),
            "data": str(data),
            "max_steps": 8,
            "save_steps": 100,
            "max_length": 48,
        },
    )
    stop = StopSignal()  # what SIGTERM sets in a job process

    def cancel_after_two_steps():
        while len(read_metrics(run_dir)) < 2:
            time.sleep(0.01)
        stop.requested = True

    threading.Thread(target=cancel_after_two_steps, daemon=True).start()
    result = run_job(run_dir, stop=stop)
    assert result["status"] == "cancelled"
    ckpt = last_checkpoint(run_dir)
    stopped_at = int(ckpt.name.split("-")[1])
    assert 2 <= stopped_at < 8  # saved where it stopped, although save_steps (100) was not reached
    assert not (run_dir / "adapter").exists()

    result = run_job(run_dir, resume=True)
    assert result["status"] == "finished" and result["step"] == 8
    steps = [r["step"] for r in read_metrics(run_dir) if "loss" in r]
    resumed = steps[steps.index(stopped_at) + 1 :]
    assert resumed and resumed[0] == stopped_at + 1  # continued from the checkpoint, not from step 1


@pytest.mark.slow
def test_cli_train_runs_and_models_merge(run_cli, tmp_path, tiny_model_dir, monkeypatch):
    """`preflab train` runs the job as a subprocess, records it, registers the adapter; merge writes a model."""
    monkeypatch.setenv("PREFLAB_HOME", str(tmp_path / "home"))
    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    sets = [
        a
        for kv in ("max_steps=2", "logging_steps=1", "max_length=48", "gradient_checkpointing=false", "save_steps=1")
        for a in ("--set", kv)
    ]
    r = run_cli(
        "train",
        "dpo",
        "--base",
        tiny_model_dir,
        "--data",
        data,
        "--out",
        tmp_path / "run",
        "--name",
        "dpo-tiny",
        "--threads",
        "1",
        *sets,
    )
    assert r.exit_code == 0, r.output
    assert "run 1: finished" in r.output
    listed = json.loads(run_cli("runs", "list", "--json").output)
    assert listed[0]["status"] == "finished" and listed[0]["metrics"]["rewards/accuracies"] is not None
    models = json.loads(run_cli("models", "list", "--json").output)
    assert models[0]["name"] == "dpo-tiny" and models[0]["stage"] == "dpo" and models[0]["run_id"] == 1
    assert models[0]["snapshot_id"] == listed[0]["snapshot_id"]

    r = run_cli("models", "merge", "dpo-tiny", "--out", tmp_path / "merged")
    assert r.exit_code == 0, r.output
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert not any("lora" in n for n, _ in merged.named_parameters())

    bad = run_cli("train", "dpo", "--base", tiny_model_dir, "--data", data, "--set", "betta=0.2")
    assert bad.exit_code == 1 and "'betta'" in bad.output and "did you mean 'beta'" in bad.output
    assert len(json.loads(run_cli("runs", "list", "--json").output)) == 1  # nothing recorded for it


def _wait(c, headers, run_id, statuses, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = c.get(f"/api/runs/{run_id}", headers=headers).json()
        if row["status"] in statuses:
            return row
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} still {row['status']}: {row}")


@pytest.mark.slow
@pytest.mark.timeout(1500)  # three job processes; on a loaded 2-core machine each start can take minutes
def test_api_launch_cancel_resume_and_failure(store, tmp_path, tiny_model_dir, monkeypatch):
    from fastapi.testclient import TestClient

    from serving.api.app import create_app
    from tests.support.data import add_user, signed_in

    monkeypatch.setenv("PREFLAB_HOME", str(tmp_path / "home"))
    seed_rankings(store)
    add_user(store, "adm", "admin")
    add_user(store, "ann", "annotator")
    with TestClient(create_app(store)) as c:
        h = signed_in(c, "adm")
        assert c.get("/api/runs", headers=signed_in(c, "ann")).status_code == 403
        bad = c.post(
            "/api/runs",
            headers=h,
            json={"stage": "dpo", "base": str(tiny_model_dir), "dataset": "prefs", "config": {"lerning_rate": 1}},
        )
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "lerning_rate"

        body = {
            "stage": "dpo",
            "base": str(tiny_model_dir),
            "dataset": "prefs",
            "name": "dpo-api",
            "threads": 1,
            "config": {**FAST, "max_steps": 400, "save_steps": 1, "max_length": 48},
        }
        r = c.post("/api/runs", headers=h, json=body)
        assert r.status_code == 201, r.text
        run = r.json()
        assert run["status"] == "running" and len(run["snapshot_id"]) == 64
        deadline = time.monotonic() + 600
        while not c.get(f"/api/runs/{run['id']}/metrics", headers=h).json()["records"]:
            assert time.monotonic() < deadline, c.get(f"/api/runs/{run['id']}/log", headers=h).json()
            time.sleep(0.3)
        assert c.post(f"/api/runs/{run['id']}/cancel", headers=h).status_code == 200
        row = _wait(c, h, run["id"], {"cancelled", "failed", "finished"})
        assert row["status"] == "cancelled", row
        metrics = c.get(f"/api/runs/{run['id']}/metrics", headers=h).json()
        assert {"rewards/margins", "learning_rate"} <= set().union(*metrics["records"])

        # resume: continues from the checkpoint; a shorter max_steps lets it finish quickly
        cfg_path = tmp_path / "home" / "runs"
        (config_yaml,) = cfg_path.glob("*/config.yaml")
        last_step = max(r["step"] for r in metrics["records"])
        config_yaml.write_text(config_yaml.read_text().replace("max_steps: 400", f"max_steps: {last_step + 2}"))
        assert c.post(f"/api/runs/{run['id']}/resume", headers=h).status_code == 200
        row = _wait(c, h, run["id"], {"finished", "failed", "cancelled"})
        assert row["status"] == "finished", row
        assert row["lineage"]["model"] == "dpo-api" and row["lineage"]["snapshot_id"] == run["snapshot_id"]
        models = c.get("/api/models", headers=h).json()
        assert any(m["name"] == "dpo-api" for m in models)

        # a job that crashes (sft data for a reward run) is marked failed with the tail of its log
        sft = write_jsonl(tmp_path / "sft.jsonl", [{"messages": [*p["prompt"], *p["chosen"]]} for p in PAIRS])
        r = c.post(
            "/api/runs",
            headers=h,
            json={"stage": "reward", "base": str(tiny_model_dir), "data": str(sft), "threads": 1, "config": FAST},
        )
        assert r.status_code == 201, r.text
        row = _wait(c, h, r.json()["id"], {"finished", "failed", "cancelled"})
        assert row["status"] == "failed" and "chosen" in row["error"], row


def test_api_base_resolves_against_the_project_folder_and_a_missing_one_is_one_400(store, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from serving.api.app import create_app
    from tests.support.data import add_user, signed_in

    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    fake_model_folder(project)
    elsewhere.mkdir()
    monkeypatch.setenv("PREFLAB_HOME", str(tmp_path / "home"))
    add_user(store, "adm", "admin")
    body = {"stage": "dpo", "base": "models/tiny", "dataset": "no-such-dataset"}
    with TestClient(create_app(store)) as c:
        h = signed_in(c, "adm")
        monkeypatch.chdir(elsewhere)  # the server's project folder has no models/tiny
        r = c.post("/api/runs", headers=h, json=body)
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["field"] == "base" and "\n" not in error["message"]
        assert "'models/tiny'" in error["message"] and "not found" in error["message"]
        assert str(elsewhere) in error["message"]  # says where relative paths resolve
        monkeypatch.chdir(project)  # here it is: the base passes, and the next check (the dataset) speaks
        r = c.post("/api/runs", headers=h, json=body)
        assert r.status_code == 404 and "no-such-dataset" in r.text, r.text
        (project / "models" / "empty").mkdir()
        r = c.post("/api/runs", headers=h, json={**body, "base": "models/empty"})
        assert r.status_code == 400 and "no config.json" in r.json()["error"]["message"]
    assert store.query("SELECT * FROM runs") == []


def test_cli_train_checks_the_base_before_anything_is_written(run_cli, tmp_path, monkeypatch):
    project = tmp_path / "project"
    fake_model_folder(project)
    monkeypatch.setenv("PREFLAB_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    r = run_cli("train", "dpo", "--base", "models/tiny", "--data", "pairs.jsonl", "--out", tmp_path / "run")
    assert r.exit_code == 1
    assert "base model 'models/tiny'" in r.output and "not found" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "run").exists()
    # --set base=... is checked the same way
    r = run_cli("train", "dpo", "--data", "pairs.jsonl", "--set", "base=models/nope", "--out", tmp_path / "run")
    assert r.exit_code == 1 and "base model 'models/nope'" in r.output, r.output
    monkeypatch.chdir(project)  # from the project folder the base resolves; the missing data is next
    r = run_cli("train", "dpo", "--base", "models/tiny", "--data", "pairs.jsonl", "--out", tmp_path / "run")
    assert r.exit_code == 1 and "pairs.jsonl" in r.output and "base model" not in r.output, r.output
