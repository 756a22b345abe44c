"""Active selection's estimate (serving.active): the uncertainty formula on hand-made cases, the Bradley-Terry fit,
`prioritize` storing scores the queue then follows, and `preflab prioritize`'s messages for bad input."""

from __future__ import annotations

import math
import zlib
from datetime import datetime

import numpy as np
import pytest

from db import priority, queue, settings
from db.errors import InputError
from serving.active.ensemble import EnsembleConfig, fit_bt, fit_ensemble, novelty, prompt_uncertainty
from serving.active.prioritize import prioritize
from tests.support.data import add_prompts, add_user, seed

T0 = datetime(2026, 1, 5, 9, 0, 0)


def fake_embed(texts: list[str]) -> np.ndarray:
    """Unit vectors fixed by each text (no model): the same text always gives the same vector."""
    rows = [np.random.default_rng(zlib.crc32(t.encode())).normal(size=16) for t in texts]
    return np.array([r / np.linalg.norm(r) for r in rows])


def test_uncertainty_is_closeness_to_a_coin_flip_plus_disagreement():
    assert prompt_uncertainty(np.zeros((2, 2))) == pytest.approx(0.25)  # both members: a coin flip, no disagreement
    assert prompt_uncertainty(np.array([[20.0, 0.0], [20.0, 0.0]])) == pytest.approx(0.0, abs=1e-8)  # sure, agreeing
    # members say 0.75 and 0.25: their mean is a coin flip (0.25) and they disagree (variance 0.0625)
    split = np.array([[math.log(3), 0.0], [-math.log(3), 0.0]])
    assert prompt_uncertainty(split) == pytest.approx(0.25 + 0.0625)
    # three answers: the mean over the three pairs; a single answer has no order to be unsure of
    three = np.array([[20.0, 0.0, 0.0], [20.0, 0.0, 0.0]])
    assert prompt_uncertainty(three) == pytest.approx(0.25 / 3, abs=1e-8)
    assert prompt_uncertainty(np.zeros((3, 1))) == 0.0


def test_novelty_is_the_distance_to_the_nearest_labelled_prompt():
    labelled = np.array([[1.0, 0.0], [0.0, 1.0]])
    got = novelty(np.array([[1.0, 0.0], [-1.0, 0.0], [math.sqrt(0.5), math.sqrt(0.5)]]), labelled)
    assert got == pytest.approx([0.0, 1.0, 1 - math.sqrt(0.5)])
    assert novelty(np.ones((2, 2)), np.zeros((0, 2))) == pytest.approx([1.0, 1.0])


def test_the_bradley_terry_fit_finds_the_hidden_direction_and_members_differ():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=8)
    diffs = rng.normal(size=(400, 8))
    diffs[diffs @ truth < 0] *= -1  # every chosen answer is the better one under `truth`
    w = fit_bt(diffs, l2=0.01)
    assert np.corrcoef(w, truth)[0, 1] > 0.9
    members = fit_ensemble(diffs, np.arange(400) // 4, EnsembleConfig(members=3, l2=0.01))
    assert members.shape == (3, 8) and not np.allclose(members[0], members[1])
    with pytest.raises(ValueError, match="at least 2 members"):
        EnsembleConfig(members=1)


def _rank_first(store, ds, users, n):
    for u in users[:n]:
        lease = queue.next_assignment(store, ds, u, now=T0)
        order = sorted(lease["answer_order"])  # the lowest answer id best: a consistent taste
        queue.submit(
            store, u, lease["assignment_id"], status="submitted", ranks={g: i + 1 for i, g in enumerate(order)}
        )


def test_prioritize_scores_answered_and_unanswered_prompts_and_the_queue_follows(store):
    p = seed(store, prompts=6, answers=3, k=1)
    add_prompts(store, "d", ["¿sin respuestas? 🤔"])
    ds = store.dataset_id("d")
    users = [add_user(store, f"u{i}", password=None) for i in range(4)]
    with pytest.raises(InputError, match="no ranked pairs yet"):
        prioritize(store, "d", embed=fake_embed)
    _rank_first(store, ds, users, 2)  # prompts 0 and 1, in id order
    report = prioritize(store, "d", embed=fake_embed)
    assert report == {"dataset": "d", "pairs": 6, "members": 5, "ensemble": 6, "novelty": 1}
    scores = priority.priorities(store, ds)
    assert {e for _, e in scores.values()} == {"ensemble", "novelty"}
    assert all(0 <= s <= 0.5 for s, e in scores.values() if e == "ensemble")
    settings.set_settings(store, ds, selection="uncertainty")
    open_scores = {pid: scores[pid][0] for pid in p[2:]}
    lease = queue.next_assignment(store, ds, users[2], now=T0)
    assert lease["prompt_id"] == max(open_scores, key=open_scores.get)


def test_cli_prioritize_refuses_bad_input_in_one_line(run_cli, store, monkeypatch):
    seed(store, prompts=2, answers=2)
    store.close()
    r = run_cli("prioritize", "--dataset", "nope")
    assert r.exit_code != 0 and "nope" in r.output and "Traceback" not in r.output
    r = run_cli("prioritize", "--dataset", "d")
    assert r.exit_code == 1 and "no ranked pairs yet" in r.output
    r = run_cli("prioritize", "--dataset", "d", "--members", "1")
    assert r.exit_code == 2 and "--members" in r.output
    r = run_cli("prioritize", "--dataset", "d", "--selection", "random")
    assert r.exit_code == 2 and "--selection" in r.output
    monkeypatch.setenv("PREFLAB_URL", "http://127.0.0.1:9")  # a server holds the database: the request goes there
    r = run_cli("prioritize", "--dataset", "d")
    assert r.exit_code == 1 and "cannot reach the PrefLab server" in r.output


def test_cli_sample_refuses_an_unknown_select(run_cli):
    r = run_cli("sample", "--dataset", "d", "--model", "m", "--select", "best")
    assert r.exit_code == 2 and "--select" in r.output


def test_cli_prioritize_stores_scores_and_sets_the_selection(run_cli, store, monkeypatch):
    import serving.active.prioritize as prioritize_module

    monkeypatch.setattr(prioritize_module, "_default_embed", fake_embed)
    seed(store, prompts=4, answers=3, k=1)
    ds = store.dataset_id("d")
    _rank_first(store, ds, [add_user(store, "ann", password=None)], 1)
    store.close()
    r = run_cli("prioritize", "--dataset", "d", "--members", "3", "--selection", "uncertainty")
    assert r.exit_code == 0, r.output
    assert "4 prompts scored by uncertainty, 0 by novelty (3 pairs, 3 members)" in r.output
    assert "selection is now 'uncertainty'" in r.output


def test_the_selection_is_set_over_http_and_the_server_serves_the_most_uncertain_prompt_first(store):
    from fastapi.testclient import TestClient

    from serving.api.app import create_app
    from tests.support.data import signed_in

    p = seed(store, prompts=4, answers=2, k=1)
    for name, role in (("ann", "annotator"), ("adm", "admin")):
        add_user(store, name, role)
    priority.replace_priorities(store, store.dataset_id("d"), [(p[2], 0.4, "ensemble"), (p[1], 0.1, "ensemble")])
    with TestClient(create_app(store)) as c:
        h = {n: signed_in(c, n) for n in ("ann", "adm")}
        r = c.put("/api/datasets/d/settings", json={"selection": "best"}, headers=h["adm"])
        assert r.status_code in (400, 422) and "selection" in r.text
        r = c.put("/api/datasets/d/settings", json={"selection": "uncertainty"}, headers=h["adm"])
        assert r.status_code == 200 and r.json()["selection"] == "uncertainty", r.text
        item = c.get("/api/queue/next", params={"dataset": "d"}, headers=h["ann"]).json()["item"]
        assert item["prompt"]["id"] == p[2]  # the highest score, not the first id


def test_the_server_recomputes_priorities_for_admins_only(store, monkeypatch):
    from fastapi.testclient import TestClient

    import serving.active.prioritize as prioritize_module
    from serving.api.app import create_app
    from tests.support.data import signed_in

    monkeypatch.setattr(prioritize_module, "_default_embed", fake_embed)
    seed(store, prompts=3, answers=3, k=1)
    for name, role in (("ann", "annotator"), ("rev", "reviewer"), ("adm", "admin")):
        add_user(store, name, role)
    with TestClient(create_app(store)) as c:
        h = {n: signed_in(c, n) for n in ("ann", "rev", "adm")}
        for who in ("ann", "rev"):
            assert c.post("/api/datasets/d/priorities", headers=h[who]).status_code == 403
        assert c.post("/api/datasets/nope/priorities", headers=h["adm"]).status_code == 404
        r = c.post("/api/datasets/d/priorities", headers=h["adm"])
        assert r.status_code == 400 and "no ranked pairs yet" in r.json()["error"]["message"], r.text
        assert r.json()["error"]["field"] == "dataset"
        r = c.post("/api/datasets/d/priorities", json={"members": 1}, headers=h["adm"])
        assert r.status_code == 422 and "members" in r.text
        item = c.get("/api/queue/next", params={"dataset": "d"}, headers=h["ann"]).json()["item"]
        order = sorted(a["id"] for a in item["answers"])
        ranks = {str(g): i + 1 for i, g in enumerate(order)}
        r = c.post("/api/rankings", json={"assignment_id": item["assignment_id"], "ranks": ranks}, headers=h["ann"])
        assert r.status_code == 201, r.text
        r = c.post("/api/datasets/d/priorities", json={"members": 3}, headers=h["adm"])
        assert r.status_code == 200, r.text
        assert r.json() == {"dataset": "d", "pairs": 3, "members": 3, "ensemble": 3, "novelty": 0}
    assert len(priority.priorities(store, store.dataset_id("d"))) == 3
