"""The `kto` stage: thumbs up/down exported from the database train a LoRA adapter on the tiny model with TRL's
KTOTrainer (a few steps on CPU), its config is TRL's KTOConfig plus ours with KTO's own checks said first, and
the CLI, the server's stage list and the export a run trains on all know the stage.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from alignment.config import load_config
from alignment.data import load_dataset_for
from alignment.errors import ConfigError, DataError
from alignment.job import prepare_run, run_job
from tests.support.training import FAST, lora_b, write_jsonl

KTO = Path(__file__).resolve().parents[1] / "data" / "kto.jsonl"
KTO_METRICS = {"loss", "learning_rate", "kl", "rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected"}


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def kto_rows(conversational: bool) -> list[dict]:
    """The rows of tests/data/kto.jsonl in one form (a snapshot holds one: text or messages)."""
    rows = [json.loads(line) for line in KTO.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if isinstance(r["completion"], list) == conversational]


@pytest.fixture
def thumbs(store):
    """tests/data/kto.jsonl imported as binary feedback: 4 thumbs up, 3 down (Spanish, Chinese, emoji)."""
    from db.importers import import_file

    import_file(store, KTO, dataset="thumbs")
    return store


@pytest.mark.parametrize("form", ["kto-messages", "kto"])
def test_kto_trains_on_exported_thumbs_and_fills_the_run_dir(form, thumbs, tmp_path, tiny_model_dir):
    """kto-messages is what a run with --dataset exports (alignment.launch); the text form trains as well."""
    from alignment.launch import STAGE_FORMATS, export_snapshot

    run_dir = tmp_path / "kto"
    if form == STAGE_FORMATS["kto"]:
        snapshot = export_snapshot(thumbs, "kto", "thumbs", run_dir)
        assert snapshot["snapshot_origin"]["counts"]["feedback"] == 7
    else:
        from db.export import export

        result = export(thumbs, form, tmp_path / "kto.jsonl", dataset="thumbs")
        snapshot = {"data": str(result.path), "snapshot_id": result.snapshot_id}
    # batch 4: each batch holds both labels, so both reward curves are logged; the KL term needs 2 or more
    values = {**FAST, **snapshot, "base": str(tiny_model_dir), "max_length": 64, "per_device_train_batch_size": 4}
    prepare_run("kto", run_dir, values=values)
    result = run_job(run_dir)

    assert result["status"] == "finished" and result["stage"] == "kto"
    assert any(v.abs().max() > 0 for v in lora_b(run_dir / "adapter").values()), "the adapter did not train"
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    seen = set().union(*(r.keys() for r in records))
    assert KTO_METRICS <= seen, KTO_METRICS - seen
    assert {r["stage"] for r in records} == {"kto"}
    assert list(run_dir.glob("checkpoint-*")), "no checkpoint"
    meta = json.loads((run_dir / "adapter" / "preflab_adapter.json").read_text(encoding="utf-8"))
    assert meta["stage"] == "kto" and meta["snapshot_id"] == snapshot["snapshot_id"]
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents*")), "no TensorBoard events"
    snap = json.loads((run_dir / "snapshot.json").read_text(encoding="utf-8"))
    assert snap["snapshot_id"] == snapshot["snapshot_id"]
    if form == "kto-messages":
        assert snap["origin"]["format"] == "kto-messages"


def test_a_kto_snapshot_reads_as_prompt_completion_label(tmp_path):
    data = write_jsonl(tmp_path / "k.jsonl", kto_rows(conversational=True))
    train, _ = load_dataset_for("kto", data)
    assert train.column_names == ["prompt", "completion", "label"]
    assert train[0]["completion"] == [{"role": "assistant", "content": ""}] and train[0]["label"] is True
    assert train[1]["prompt"][0]["content"] == "Tell me a joke 😄"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (kto_rows(False)[:1] + kto_rows(True)[:1], "row 2: field 'completion' (or 'prompt') is not text"),
        ([{"prompt": "¿Sí?", "completion": "Sí", "label": "yes"}], "row 1: field 'label' must be true or false"),
        ([{"prompt": "你好", "chosen": "a", "rejected": "b"}], "Export with --format kto or kto-messages"),
    ],
)
def test_a_bad_kto_snapshot_names_the_row_and_field(rows, message, tmp_path):
    data = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        load_dataset_for("kto", data)
    assert str(data) in str(e.value)


# ---- config ---------------------------------------------------------------------------------------------


def test_kto_config_is_trl_s_kto_config_plus_ours_with_cpu_defaults(tmp_path):
    import trl

    from alignment.config import CONFIG_CLASSES, save_config
    from alignment.kto_config import KTORunConfig
    from alignment.preflab_fields import PrefLabFields

    assert CONFIG_CLASSES["kto"] is KTORunConfig
    assert issubclass(KTORunConfig, trl.KTOConfig) and issubclass(KTORunConfig, PrefLabFields)
    assert not KTORunConfig.needs_reward_model
    cfg = load_config(
        stage="kto",
        values={"base": "m", "data": "d.jsonl", "output_dir": str(tmp_path)},
        overrides=["desirable_weight=1.3", "undesirable_weight=0.8", "beta=0.2"],
    )
    if not torch.cuda.is_available():
        assert cfg.use_cpu and not cfg.bf16
    again = load_config(save_config(cfg, tmp_path / "config.yaml"))
    assert (again.desirable_weight, again.undesirable_weight, again.beta) == (1.3, 0.8, 0.2)


@pytest.mark.parametrize(
    ("values", "key", "fix"),
    [
        ({"per_device_train_batch_size": 1}, "per_device_train_batch_size", "must be > 1 for loss_type kto"),
        ({"train_sampling_strategy": "random"}, "train_sampling_strategy", "must be 'sequential'"),
        ({"desirable_weight": 0}, "desirable_weight", "must be > 0"),
        ({"desirable_weigth": 1.2}, "desirable_weigth", "did you mean 'desirable_weight'"),
        ({"beta": "high"}, "beta", "expected float"),
    ],
)
def test_bad_kto_config_names_the_key_and_the_fix(values, key, fix):
    with pytest.raises(ConfigError) as e:
        load_config(stage="kto", values={"base": "m", "data": "d", "output_dir": "x", **values})
    assert e.value.key == key and fix in str(e.value)


def test_a_batch_of_one_is_fine_without_the_kl_term():
    cfg = load_config(
        stage="kto",
        values={"base": "m", "data": "d", "output_dir": "x", "per_device_train_batch_size": 1},
        overrides=["loss_type=apo_zero_unpaired"],
    )
    assert cfg.loss_type == "apo_zero_unpaired"


def test_help_config_lists_every_kto_field_and_a_bad_field_is_refused(run_cli, store, tmp_path):
    from alignment.config import CONFIG_CLASSES

    r = run_cli("train", "kto", "--help-config")
    assert r.exit_code == 0, r.output
    for f in dataclasses.fields(CONFIG_CLASSES["kto"]):
        if f.init:
            assert f"\n  {f.name}: " in r.output, f.name
    assert "KTO (TRL KTOConfig)" in r.output and "\nLoRA\n" in r.output
    assert "  desirable_weight: float = 1.0  (admin page: 1.0)" in r.output
    assert '  loss_type: str = "kto"  (admin page: "kto")' in r.output

    data = write_jsonl(tmp_path / "k.jsonl", kto_rows(conversational=True))
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}", encoding="utf-8")
    r = run_cli("train", "kto", "--base", tmp_path / "m", "--data", data, "--set", "undesirable_wieght=2")
    assert r.exit_code == 1
    assert "key 'undesirable_wieght': unknown key for stage 'kto'; did you mean 'undesirable_weight'?" in r.output
    assert "Traceback" not in r.output
    assert store.scalar("SELECT count(*) FROM runs") == 0


def test_the_admin_page_values_make_a_valid_kto_config(tmp_path):
    from alignment.config import page_fields

    fields = {f["name"]: f for f in page_fields("kto")}
    assert fields["loss_type"]["choices"] == ["kto", "apo_zero_unpaired"]
    assert {"desirable_weight", "undesirable_weight", "beta", "learning_rate", "lora_r"} <= set(fields)
    assert fields["desirable_weight"]["help"] and fields["learning_rate"]["default"] == 1e-6
    values = {name: f["value"] for name, f in fields.items()}
    cfg = load_config(stage="kto", values={**values, "base": "m", "data": "d", "output_dir": str(tmp_path)})
    assert cfg.learning_rate == values["learning_rate"] and cfg.per_device_train_batch_size > 1


def test_the_stage_list_route_offers_kto(store):
    from fastapi.testclient import TestClient

    from serving.api.app import create_app
    from tests.support.data import add_user, signed_in

    add_user(store, "adm", "admin")
    with TestClient(create_app(store)) as c:
        r = c.get("/api/train/stages", headers=signed_in(c, "adm"))
    assert r.status_code == 200, r.text
    kto = next(s for s in r.json()["stages"] if s["stage"] == "kto")
    assert kto["config_class"] == "KTORunConfig" and not kto["needs_reward_model"]
    assert {"desirable_weight", "undesirable_weight", "beta"} <= {f["name"] for f in kto["fields"]}
