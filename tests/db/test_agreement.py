"""Agreement measures against textbook values, ranked-pairs consensus, and `preflab stats`."""

import json
import math

import pytest

from db.agreement import (
    agreement_stats,
    dataset_alpha,
    dataset_stats,
    kendall_tau_b,
    kendall_w,
    krippendorff_alpha,
    midranks,
)
from db.consensus import consensus_order, consensus_ranks, ranked_pairs
from db.hashing import prompt_hash, text_hash
from db.staging import Batch

nan = math.nan


def add_prompt(store, question, answers, rankings, *, dataset="agree", source="human"):
    """One prompt with `answers`, ranked by each annotator: rankings = {annotator: [rank of each answer]}."""
    msgs = [{"role": "user", "content": question}]
    pk = prompt_hash(msgs)
    b = Batch()
    b.prompts.append({"key": pk, "messages": json.dumps(msgs, ensure_ascii=False)})
    for a in answers:
        b.generations.append({"prompt_key": pk, "gen_key": text_hash(a), "text": a})
    for who, ranks in rankings.items():
        b.rankings.append({"ranking_key": f"{pk}/{who}", "prompt_key": pk, "annotator": who, "source": source})
        for a, r in zip(answers, ranks, strict=True):
            b.items.append({"ranking_key": f"{pk}/{who}", "gen_key": text_hash(a), "rank": r})
    store.write_batch(dataset, b, created_by="test")
    return store.scalar("SELECT id FROM prompts WHERE content_hash = ?", [pk])


# ---- the measures ------------------------------------------------------------------------------


def test_tau_b_known_values():
    assert kendall_tau_b([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0
    assert kendall_tau_b([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    # hand count with ties: x=(1,2,2,3), y=(1,3,2,2): concordant 3, discordant 1; untied pairs 5 in x, 5 in y
    assert kendall_tau_b([1, 2, 2, 3], [1, 3, 2, 2]) == pytest.approx((3 - 1) / math.sqrt(5 * 5))
    assert math.isnan(kendall_tau_b([1, 1, 1], [1, 2, 3]))  # one side all ties: undefined
    # scipy.stats.kendalltau (tau-b) gives 0.6842105263157894 here; importing scipy costs seconds, so it is inlined
    assert kendall_tau_b([1, 2, 2, 3, 4, 4, 5], [2, 1, 3, 3, 5, 4, 4]) == pytest.approx(0.6842105263157894)


def test_kendall_w_known_values():
    assert kendall_w([[1, 2, 3, 4]] * 3) == pytest.approx(1.0)
    # column sums 4, 6, 8 around 6: S = 8, W = 12 * 8 / (3^2 * (27 - 3)) = 4/9
    assert kendall_w([[1, 2, 3], [1, 3, 2], [2, 1, 3]]) == pytest.approx(4 / 9)
    # ties: mid-ranks (1.5, 1.5, 3) and (1, 2, 3); S = 6.5, sum T = 6, W = 78 / (4 * 24 - 2 * 6)
    assert kendall_w([[1, 1, 2], [1, 2, 3]]) == pytest.approx(78 / 84)
    assert kendall_w([[1, 2], [2, 1]]) == pytest.approx(0.0)
    assert list(midranks([1, 1, 2, 5, 5, 5])) == [1.5, 1.5, 3, 5, 5, 5]


def test_krippendorff_alpha_textbook_example():
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": 4 observers, 12 units, missing values
    data = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
        [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
    ]
    assert krippendorff_alpha(data, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(data, "ordinal") == pytest.approx(0.815, abs=5e-4)
    assert krippendorff_alpha(data, "interval") == pytest.approx(0.849, abs=5e-4)
    assert krippendorff_alpha([[1, 2, 3], [1, 2, 3]]) == pytest.approx(1.0)
    assert krippendorff_alpha([[1, 2, 3], [3, 2, 1]]) < 0


def test_ranked_pairs_breaks_the_weakest_majority_of_a_cycle():
    # 1 beats 2 (3:1), 2 beats 3 (3:1), 3 beats 1 (2:1): the cycle is cut at its weakest link, 3 > 1
    votes = {(1, 2): (3, 1, 0), (2, 3): (3, 1, 0), (1, 3): (1, 2, 0)}
    assert ranked_pairs([1, 2, 3], votes) == {1: 1, 2: 2, 3: 3}
    # no majority between 1 and 3, both beat 2: they share the top rank
    assert ranked_pairs([1, 2, 3], {(1, 2): (1, 0, 0), (2, 3): (0, 1, 0), (1, 3): (0, 0, 1)}) == {1: 1, 3: 1, 2: 2}
    # three annotators, one disagrees: the majority order wins
    assert consensus_ranks({1: {10: 1, 11: 2, 12: 3}, 2: {10: 1, 11: 2, 12: 3}, 3: {10: 3, 11: 2, 12: 1}}) == {
        10: 1,
        11: 2,
        12: 3,
    }


# ---- over the database -------------------------------------------------------------------------


def test_identical_rankings_agree_perfectly(store):
    for i in range(3):
        same = {w: [1, 2, 3, 4] for w in ("ana", "bo", "chen")}
        add_prompt(store, f"¿Pregunta {i}? 東京 🗼", ["a", "b", "c", "d"], same)
    a = dataset_stats(store, "agree")["agreement"]
    assert a["prompts_with_overlap"] == 3
    assert a["kendall_tau"] == pytest.approx(1.0)
    assert a["kendall_w"] == pytest.approx(1.0)
    assert a["krippendorff_alpha"] == pytest.approx(1.0)
    assert a["pair_agreement"] == pytest.approx(1.0)
    assert all(p["tau_b_vs_consensus"] == pytest.approx(1.0) for p in a["per_annotator"])


def test_reversed_rankings_disagree(store):
    add_prompt(store, "q", ["a", "b", "c"], {"ana": [1, 2, 3], "bo": [3, 2, 1]})
    a = agreement_stats(store, store.dataset_id("agree"))
    assert a["pairwise"] == [{"a": "ana", "b": "bo", "prompts": 1, "tau_b": pytest.approx(-1.0)}]
    assert a["kendall_w"] == pytest.approx(0.0)
    assert a["krippendorff_alpha"] < 0


def test_sql_alpha_matches_the_reference_implementation(store):
    # units are answers, coders are rankings, values are mid-ranks within the ranking
    add_prompt(store, "p1", ["a", "b", "c"], {"ana": [1, 2, 3], "bo": [1, 3, 2], "chen": [2, 1, 3]})
    add_prompt(store, "p2", ["x", "y"], {"ana": [1, 1], "bo": [1, 2]})
    expected = krippendorff_alpha([[1, 2, 3, 1.5, 1.5], [1, 3, 2, 1, 2], [2, 1, 3, nan, nan]], "ordinal")
    assert dataset_alpha(store, store.dataset_id("agree")) == pytest.approx(expected)


def test_one_annotator_disagreeing_with_two(store):
    pid = add_prompt(
        store, "¿Cuál es mejor? 😀", ["uno", "dos", "tres"], {"ana": [1, 2, 3], "bo": [1, 2, 3], "chen": [3, 2, 1]}
    )
    order = consensus_order(store, pid)
    texts = {r["id"]: r["text"] for r in store.query("SELECT id, text FROM generations")}
    assert [texts[o["generation_id"]] for o in order] == ["uno", "dos", "tres"]
    per = {p["annotator"]: p for p in dataset_stats(store, "agree")["agreement"]["per_annotator"]}
    assert per["ana"]["tau_b_vs_consensus"] == pytest.approx(1.0)
    assert per["chen"]["tau_b_vs_consensus"] == pytest.approx(-1.0)


def test_stats_counts_and_cli(store, run_cli):
    add_prompt(store, "q1", ["a", "b", "c"], {"ana": [1, 1, 2]})
    add_prompt(store, "q2", ["a", "b"], {"ana": [1, 2], "bo": [2, 1]})
    c = dataset_stats(store, "agree")["counts"]
    assert (c["prompts"], c["generations"], c["rankings"], c["submitted"], c["annotators"]) == (2, 5, 3, 3, 2)
    assert (c["pairs"], c["ties"], c["consensus_pairs"], c["prompts_with_overlap"]) == (4, 1, 4, 1)
    store.close()
    r = run_cli("stats", "--dataset", "agree")
    assert r.exit_code == 0, r.output
    assert "Krippendorff alpha (ordinal)" in r.output and "annotators" in r.output
    r = run_cli("stats", "--dataset", "agree", "--json")
    assert json.loads(r.output)["counts"]["ties"] == 1
    r = run_cli("stats", "--dataset", "no-such")
    assert r.exit_code == 1 and "no dataset named 'no-such'" in r.output
