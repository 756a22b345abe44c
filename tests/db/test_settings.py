"""A dataset's annotation settings (db.settings) and what the queue does with them: aspect ratings and a rationale
stored with a submit, bad ones refused with the field named and nothing written, a 'rate' task over one-answer
prompts, agreement per aspect and the trl export's margin from ratings."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from db import queue, settings
from db.agreement import aspect_alpha, dataset_stats, krippendorff_alpha
from db.errors import InputError
from db.export import export
from tests.support.data import add_user, seed


def _aspect(name="helpfulness", lo=0, hi=4, required=False, **extra):
    return {"name": name, "min": lo, "max": hi, "description": "¿útil? 有用 👍", "required": required, **extra}


@pytest.mark.parametrize(
    ("aspects", "field"),
    [
        ([_aspect(), _aspect()], "aspects[1].name"),
        ([_aspect(name="")], "aspects[0].name"),
        ([_aspect(name="x" * 41)], "aspects[0].name"),
        ([_aspect(lo=4, hi=4)], "aspects[0].max"),
        ([_aspect(lo="0")], "aspects[0].min"),
        ([_aspect(required="yes")], "aspects[0].required"),
        ([_aspect(colour="red")], "aspects[0].colour"),
        ([_aspect(name=f"a{i}") for i in range(13)], "aspects"),
        ("helpfulness", "aspects"),
    ],
)
def test_bad_aspects_are_refused_naming_the_field_and_nothing_changes(store, aspects, field):
    seed(store, prompts=1)
    did = store.dataset_id("d")
    with pytest.raises(InputError) as e:
        settings.set_settings(store, did, aspects=aspects)
    assert e.value.field == field
    assert store.scalar("SELECT count(*) FROM dataset_settings") == 0


def test_settings_round_trip_and_the_helpsteer2_preset(store):
    seed(store, prompts=1)
    did = store.dataset_id("d")
    assert settings.get_settings(store, did) == {
        "task": "rank",
        "aspects": [],
        "rationale": "off",
        "gold_rate": 0.05,
        "selection": "order",
    }
    preset = settings.helpsteer2_aspects()
    assert [a["name"] for a in preset] == ["helpfulness", "correctness", "coherence", "complexity", "verbosity"]
    assert all(a["min"] == 0 and a["max"] == 4 and a["description"] for a in preset)
    got = settings.set_settings(store, did, task="rank", aspects=[_aspect(name="名字 ✨")], rationale="optional")
    assert got["aspects"][0]["name"] == "名字 ✨" and got["rationale"] == "optional"
    assert settings.set_settings(store, did, aspects=[])["aspects"] == []
    with pytest.raises(InputError) as e:
        settings.set_settings(store, did, task="judge")
    assert e.value.field == "task"
    with pytest.raises(InputError) as e:
        settings.set_settings(store, did, rationale="always")
    assert e.value.field == "rationale"


@pytest.fixture
def rated(store):
    """Dataset d: 3 prompts of 3 answers, k=2, helpfulness required (0-4), verbosity optional (1-5), rationale
    required; users ann and bob."""
    seed(store, prompts=3, answers=3, k=2)
    did = store.dataset_id("d")
    aspects = [_aspect(required=True), _aspect(name="verbosity", lo=1, hi=5)]
    settings.set_settings(store, did, aspects=aspects, rationale="required")
    return did, add_user(store, "ann", password=None), add_user(store, "bob", password=None)


def _full(lease, helpful=(4, 2, 0)):
    order = lease["answer_order"]
    ranks = {str(g): i + 1 for i, g in enumerate(order)}
    ratings = {str(g): {"helpfulness": h} for g, h in zip(order, helpful, strict=True)}
    return ranks, ratings


def test_ratings_and_rationale_are_stored_with_the_ranking(store, rated):
    did, ann, _ = rated
    lease = queue.next_assignment(store, did, ann)
    assert (lease["task"], lease["rationale"]) == ("rank", "required")
    assert [a["name"] for a in lease["aspects"]] == ["helpfulness", "verbosity"]
    ranks, ratings = _full(lease)
    ratings[str(lease["answer_order"][0])]["verbosity"] = 5
    why = "La primera es más clara; 第二个有错误 🤔"
    rid = queue.submit(store, ann, lease["assignment_id"], status="submitted", ranks=ranks, ratings=ratings,
                       rationale=f"  {why} ")  # fmt: skip
    rows = store.query("SELECT generation_id, aspect, value FROM ratings WHERE ranking_id = ? ORDER BY 1, 2", [rid])
    assert len(rows) == 4 and {r["aspect"] for r in rows} == {"helpfulness", "verbosity"}
    assert store.scalar("SELECT rationale FROM ranking_notes WHERE ranking_id = ?", [rid]) == why
    assert store.scalar("SELECT count(*) FROM pairs WHERE ranking_id = ?", [rid]) == 3


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda rt, o: rt[str(o[1])].pop("helpfulness"), "ratings.{1}.helpfulness"),  # required missing
        (lambda rt, o: rt[str(o[0])].update(helpfulness=5), "ratings.{0}.helpfulness"),  # out of range
        (lambda rt, o: rt[str(o[0])].update(verbosity=0.5), "ratings.{0}.verbosity"),
        (lambda rt, o: rt[str(o[0])].update(honesty=3), "ratings.{0}.honesty"),  # unknown aspect
        (lambda rt, o: rt.update({"999999": {"helpfulness": 1}}), "ratings.999999"),  # not an answer of the item
    ],
)
def test_bad_ratings_are_refused_naming_the_field_and_nothing_is_written(store, rated, change, field):
    did, ann, _ = rated
    lease = queue.next_assignment(store, did, ann)
    order = lease["answer_order"]
    ranks, ratings = _full(lease)
    change(ratings, order)
    with pytest.raises(InputError) as e:
        queue.submit(store, ann, lease["assignment_id"], status="submitted", ranks=ranks, ratings=ratings,
                     rationale="ok")  # fmt: skip
    assert e.value.field == field.format(*order)
    assert store.scalar("SELECT count(*) FROM rankings") == 0
    assert store.scalar("SELECT count(*) FROM ratings") == 0
    assert store.scalar("SELECT status FROM assignments WHERE id = ?", [lease["assignment_id"]]) == "leased"


def test_a_required_rationale_must_be_there_and_a_skip_needs_no_ratings(store, rated):
    did, ann, _ = rated
    lease = queue.next_assignment(store, did, ann)
    ranks, ratings = _full(lease)
    for rationale in (None, "   "):
        with pytest.raises(InputError) as e:
            queue.submit(store, ann, lease["assignment_id"], status="submitted", ranks=ranks, ratings=ratings,
                         rationale=rationale)  # fmt: skip
        assert e.value.field == "rationale"
    queue.submit(store, ann, lease["assignment_id"], status="skipped", skip_reason="no sé")
    assert store.scalar("SELECT count(*) FROM ratings") == 0


def test_a_rate_task_serves_one_answer_prompts_and_stores_thumbs(store):
    seed(store, "r", prompts=2, answers=1, k=1)
    did = store.dataset_id("r")
    ann = add_user(store, "ann", password=None)
    assert queue.next_assignment(store, did, ann) is None  # ranking needs two answers
    settings.set_settings(store, did, task="rate")
    lease = queue.next_assignment(store, did, ann)
    assert lease is not None and lease["task"] == "rate" and len(lease["answer_order"]) == 1
    gid = lease["answer_order"][0]
    with pytest.raises(InputError) as e:
        queue.submit(store, ann, lease["assignment_id"], status="submitted", ranks={str(gid): 1})
    assert e.value.field == "ranks"
    with pytest.raises(InputError) as e:
        queue.submit(store, ann, lease["assignment_id"], status="submitted")
    assert e.value.field == f"thumbs.{gid}"
    rid = queue.submit(store, ann, lease["assignment_id"], status="submitted", thumbs={str(gid): False})
    fb = store.query("SELECT generation_id, user_id, label, source FROM feedback")
    assert fb == [{"generation_id": gid, "user_id": ann, "label": False, "source": "human"}]
    assert store.scalar("SELECT count(*) FROM ranking_items WHERE ranking_id = ?", [rid]) == 0
    assert store.scalar("SELECT count(*) FROM pairs") == 0
    nxt = queue.next_assignment(store, did, ann)  # k=1: the rated prompt is done, the other one comes
    assert nxt is not None and nxt["prompt_id"] != lease["prompt_id"]
    assert queue.progress(store, did, ann)["remaining"] == 1


def _rate_all(store, did, uid, values):
    """Rank and rate the user's next item: helpfulness `values` by answer id order."""
    lease = queue.next_assignment(store, did, uid)
    ids = sorted(lease["answer_order"])
    ranks = {str(g): i + 1 for i, g in enumerate(ids)}
    ratings = {str(g): {"helpfulness": v} for g, v in zip(ids, values, strict=True)}
    queue.submit(store, uid, lease["assignment_id"], status="submitted", ranks=ranks, ratings=ratings, rationale="ok")


def test_alpha_per_aspect_over_answers_rated_twice(store, rated):
    did, ann, bob = rated
    for values_ann, values_bob in (((4, 2, 0), (4, 1, 0)), ((3, 3, 1), (2, 3, 1))):
        _rate_all(store, did, ann, values_ann)
        _rate_all(store, did, bob, values_bob)
    got = aspect_alpha(store, did)
    assert set(got) == {"helpfulness"} and got["helpfulness"]["answers"] == 6
    assert got["helpfulness"]["ratings"] == 12
    by_hand = krippendorff_alpha([[4, 2, 0, 3, 3, 1], [4, 1, 0, 2, 3, 1]], "interval")
    assert got["helpfulness"]["alpha"] == pytest.approx(by_hand) and 0.8 < by_hand < 1
    assert dataset_stats(store, "d")["aspect_agreement"] == got


def test_trl_margin_from_ratings_and_parquet_rationales(store, rated, tmp_path):
    did, ann, bob = rated
    lease = queue.next_assignment(store, did, ann)
    ids = sorted(lease["answer_order"])
    ranks = {str(g): i + 1 for i, g in enumerate(ids)}
    ratings = {str(g): {"helpfulness": v} for g, v in zip(ids, (4, 1, 0), strict=True)}
    why = "Porque sí 🙂 因为"
    queue.submit(store, ann, lease["assignment_id"], status="submitted", ranks=ranks, ratings=ratings, rationale=why)
    out = tmp_path / "pairs.jsonl"
    export(store, "trl", out, dataset="d", margin_aspect="helpfulness")
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert sorted(r["margin"] for r in rows) == [1.0, 3.0, 4.0]
    plain = tmp_path / "plain.jsonl"
    export(store, "trl", plain, dataset="d")
    assert "margin" not in json.loads(plain.read_text(encoding="utf-8").splitlines()[0])
    with pytest.raises(InputError) as e:
        export(store, "parquet", tmp_path / "x.parquet", dataset="d", margin_aspect="helpfulness")
    assert e.value.field == "margin_aspect"
    pq = tmp_path / "pairs.parquet"
    export(store, "parquet", pq, dataset="d")
    assert [list(x) for x in pd.read_parquet(pq)["rationales"]] == [[why]] * 3
