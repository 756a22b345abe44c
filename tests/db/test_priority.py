"""Active selection in the database: stored prompt priorities (db.priority), the dataset's selection setting, the
queue handing out the highest priority first under 'uncertainty' (id order otherwise) and the sampler's --select."""

from __future__ import annotations

from datetime import datetime

import pytest

from db import priority, queue, sampling, settings
from db.errors import InputError
from tests.support.data import add_prompts, add_user, seed

T0 = datetime(2026, 1, 5, 9, 0, 0)


@pytest.fixture
def q(store):
    prompts = seed(store, prompts=4, answers=3, k=1)
    users = [add_user(store, n, password=None) for n in ("ann", "bob", "cat", "dan", "eve")]
    return store, store.dataset_id("d"), prompts, users


def _lease_order(store, ds, users) -> list[int]:
    return [queue.next_assignment(store, ds, u, now=T0)["prompt_id"] for u in users[:4]]


def test_the_queue_follows_the_scores_only_when_the_selection_is_uncertainty(q):
    store, ds, p, users = q
    priority.replace_priorities(
        store, ds, [(p[0], 0.01, "ensemble"), (p[2], 0.3, "ensemble"), (p[3], 0.2, "ensemble")]
    )
    assert settings.get_settings(store, ds)["selection"] == "order"
    assert _lease_order(store, ds, users) == p  # k = 1: each user gets the next prompt in id order
    for u in users[:4]:
        queue.release(store, queue.next_assignment(store, ds, u, now=T0)["assignment_id"], u)
    settings.set_settings(store, ds, selection="uncertainty")
    # most uncertain first, the unscored prompt after the scored ones; k = 1 still gives each prompt to one user
    assert _lease_order(store, ds, users) == [p[2], p[3], p[0], p[1]]
    assert queue.next_assignment(store, ds, users[4], now=T0) is None


def test_a_ranked_prompt_leaves_the_uncertainty_queue_and_the_next_score_comes_up(q):
    store, ds, p, users = q
    settings.set_settings(store, ds, selection="uncertainty")
    priority.replace_priorities(store, ds, [(p[1], 0.4, "ensemble"), (p[3], 0.3, "ensemble")])
    lease = queue.next_assignment(store, ds, users[0], now=T0)
    assert lease["prompt_id"] == p[1]
    ranks = {g: i + 1 for i, g in enumerate(lease["answer_order"])}
    queue.submit(store, users[0], lease["assignment_id"], status="submitted", ranks=ranks)
    assert queue.next_assignment(store, ds, users[0], now=T0)["prompt_id"] == p[3]
    # new scores replace the old ones at once
    priority.replace_priorities(store, ds, [(p[0], 0.5, "ensemble")])
    assert priority.priorities(store, ds) == {p[0]: (0.5, "ensemble")}
    assert queue.next_assignment(store, ds, users[1], now=T0)["prompt_id"] == p[0]


def test_bad_priorities_and_selections_are_refused_and_nothing_changes(q):
    store, ds, p, _ = q
    priority.replace_priorities(store, ds, [(p[0], 0.2, "ensemble")])
    other = seed(store, "other", prompts=1)
    with pytest.raises(InputError) as e:
        priority.replace_priorities(store, ds, [(p[1], 0.1, "ensemble"), (other[0], 0.9, "ensemble")])
    assert e.value.field == "prompt_id"
    with pytest.raises(InputError) as e:
        priority.replace_priorities(store, ds, [(p[1], 0.1, "guess")])
    assert e.value.field == "estimator"
    with pytest.raises(InputError) as e:
        priority.replace_priorities(store, ds, [(p[1], float("nan"), "ensemble")])
    assert e.value.field == "score"
    assert priority.priorities(store, ds) == {p[0]: (0.2, "ensemble")}
    with pytest.raises(InputError) as e:
        settings.set_settings(store, ds, selection="random")
    assert e.value.field == "selection"
    assert settings.get_settings(store, ds)["selection"] == "order"


def test_sampling_with_select_uncertainty_takes_the_highest_scored_prompts_still_short_of_answers(store):
    add_prompts(store, "fresh", ["uno", "dos", "tres ✨", "四"])
    ds = store.dataset_id("fresh")
    ids = [r["id"] for r in store.query("SELECT id FROM prompts WHERE dataset_id = ? ORDER BY id", [ds])]
    priority.replace_priorities(store, ds, [(ids[1], 0.2, "novelty"), (ids[3], 0.9, "novelty")])
    params = sampling.canonical_params({"n": 2})
    kw = dict(model="m", adapter=None, params=params, n=2)
    todo, _ = sampling.prompts_to_sample(store, "fresh", limit=3, select="uncertainty", **kw)
    assert [t["id"] for t in todo] == [ids[3], ids[1], ids[0]]
    todo, _ = sampling.prompts_to_sample(store, "fresh", limit=2, **kw)
    assert [t["id"] for t in todo] == ids[:2]
    with pytest.raises(InputError) as e:
        sampling.prompts_to_sample(store, "fresh", select="best", **kw)
    assert e.value.field == "select"
