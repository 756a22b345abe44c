"""The closed loop: the synthetic annotator's rule, the report's arithmetic, and one short loop end to end."""

from __future__ import annotations

import json
import math
import random

import pytest

from db.hashing import prompt_hash, text_hash
from db.staging import Batch
from serving.loop import synthetic
from serving.loop.synthetic import SyntheticConfig, annotate_dataset, judge, noisy_ranks, rule_ranks, rule_reward

PROMPT = 'Tell me about rivers. Use the word "water".'


# ---- the rule ---------------------------------------------------------------------------------------


def test_keyword_is_read_from_the_prompt():
    assert synthetic.requested_keyword(PROMPT) == "water"
    assert synthetic.requested_keyword("Describe a cat. keyword: gato") == "gato"
    assert synthetic.requested_keyword("Describe a cat.") is None


def test_real_words_beat_made_up_ones_and_the_keyword_counts_double():
    assert {"the", "day", "is", "cold"} <= synthetic.real_words()
    assert "zzqx" not in synthetic.real_words()
    assert rule_reward(PROMPT, "the day is cold") == pytest.approx(1.0)
    assert rule_reward(PROMPT, "the zzqx is cold") == pytest.approx(0.75)
    assert rule_reward(PROMPT, "the water is cold") == pytest.approx(1.25)  # the keyword scores 2
    assert rule_reward(PROMPT, "the WATER is cold") == rule_reward(PROMPT, "the water is cold")  # any case
    assert rule_reward(PROMPT, "¡el río, 水 y 🌊!") == rule_reward(PROMPT, "el río 水 y")  # words are runs of letters


def test_the_rule_has_no_length_term():
    window = synthetic.WINDOW
    # only the first WINDOW words count: running on changes nothing ...
    assert rule_reward(PROMPT, "the day is cold" + " zzqx" * 20) == rule_reward(PROMPT, "the day is cold")
    assert rule_reward(PROMPT, "zzqx " * window + "water " * 10) == 0.0  # the keyword past the window: nothing
    # ... and stopping early earns the base model's share of real words per missing word, no more
    assert rule_reward(PROMPT, "") == pytest.approx(synthetic.MISSING_WORD)
    assert rule_reward(PROMPT, "day") == pytest.approx((1 + (window - 1) * synthetic.MISSING_WORD) / window)


def test_rule_ranks_are_dense_with_ties():
    answers = ["the water is", "abc", "xyz", "the day is cold"]
    assert rule_ranks(PROMPT, answers) == [1, 3, 3, 2]  # "abc" and "xyz" tie: both made up
    assert judge(PROMPT, "abc", "xyz") == "tie"
    assert judge(PROMPT, "water", "abc") == "a"
    assert judge(PROMPT, "zzqx zzqx", "day") == "b"


def test_noise_zero_keeps_the_ranking_and_noise_one_swaps_neighbours():
    ranks = [3, 1, 2, 4]
    assert noisy_ranks(ranks, 0.0, random.Random(1)) == ranks
    # noise 1: every adjacent position swaps in turn, so the best answer bubbles to the bottom
    assert noisy_ranks(ranks, 1.0, random.Random(1)) == [2, 4, 1, 3]
    a = noisy_ranks([1, 2, 3, 4, 5], 0.3, random.Random("7:synthetic-1:p"))
    b = noisy_ranks([1, 2, 3, 4, 5], 0.3, random.Random("7:synthetic-1:p"))
    assert a == b and sorted(a) == [1, 2, 3, 4, 5]


def test_config_rejects_bad_values_with_the_fix():
    with pytest.raises(ValueError, match="noise is a probability"):
        SyntheticConfig(noise=1.5)
    with pytest.raises(ValueError, match="annotators must be >= 1"):
        SyntheticConfig(annotators=0)


# ---- annotation into the store ---------------------------------------------------------------------


def _seed_dataset(store, n_prompts=6, answers=("water", "abc", "xyz", "a much longer answer", "mid size")):
    batch = Batch()
    for i in range(n_prompts):
        messages = [{"role": "user", "content": f'Topic {i}: rivers. Use the word "water".'}]
        key = prompt_hash(messages)
        batch.prompts.append({"key": key, "messages": json.dumps(messages, ensure_ascii=False), "source": "test"})
        for text in answers:
            batch.generations.append(
                {"prompt_key": key, "gen_key": text_hash(text), "text": text, "kind": "model", "model": "tiny"}
            )
    store.write_batch("synth", batch, created_by="test")


def test_annotation_writes_synthetic_rankings_and_pairs_add_up(store):
    _seed_dataset(store)
    result = annotate_dataset(store, "synth", SyntheticConfig(annotators=3, noise=0.0, seed=0))
    assert result.prompts == 6 and result.rankings == 18
    k = 5
    assert result.expected_pairs == 18 * math.comb(k, 2)
    # one tie per ranking ("abc" vs "xyz"): pairs = sum of C(K,2) minus ties
    assert result.ties == 18 and result.pairs == result.expected_pairs - result.ties
    kinds = {r["kind"] for r in store.query("SELECT kind FROM users WHERE name LIKE 'synthetic-%'")}
    assert kinds == {"synthetic"}
    assert {r["source"] for r in store.query("SELECT DISTINCT source FROM rankings")} == {"synthetic"}
    # noise 0: all three annotators give the same ranking of every prompt
    per_prompt = store.query(
        "SELECT r.prompt_id, count(DISTINCT string_agg_ranks) AS n FROM (SELECT r.prompt_id, r.id, "
        "string_agg(CAST(i.generation_id AS VARCHAR) || ':' || CAST(i.rank AS VARCHAR), ',' ORDER BY i.generation_id)"
        " AS string_agg_ranks FROM rankings r JOIN ranking_items i ON i.ranking_id = r.id GROUP BY r.prompt_id, r.id)"
        " r GROUP BY r.prompt_id"
    )
    assert all(row["n"] == 1 for row in per_prompt)
    # the best answer under the rule is chosen in every non-tie pair it is part of
    best = store.query(
        "SELECT count(*) AS n FROM pairs p JOIN generations g ON g.id = p.rejected_id WHERE g.text = 'water'"
    )[0]["n"]
    assert best == 0
    again = annotate_dataset(store, "synth", SyntheticConfig(annotators=3, noise=0.0, seed=0))
    assert again.rankings == 0  # idempotent: one ranking per annotator per prompt
    # ... so every agreement measure is perfect
    from db.agreement import dataset_stats

    a = dataset_stats(store, "synth")["agreement"]
    assert a.get("kendall_w", a.get("kendall_w_mean")) == pytest.approx(1.0)
    assert a.get("kendall_tau", a.get("tau_b_mean")) == pytest.approx(1.0)


def test_noise_makes_annotators_disagree_reproducibly(store):
    _seed_dataset(store, n_prompts=20)
    annotate_dataset(store, "synth", SyntheticConfig(annotators=3, noise=0.4, seed=3))
    rows = store.query(
        "SELECT u.name, r.prompt_id, i.generation_id, i.rank FROM rankings r JOIN users u ON u.id = r.user_id "
        "JOIN ranking_items i ON i.ranking_id = r.id ORDER BY 1, 2, 3"
    )
    by = {}
    for r in rows:
        by.setdefault((r["name"], r["prompt_id"]), []).append(r["rank"])
    differing = sum(by[("synthetic-1", p)] != by[("synthetic-2", p)] for (_, p) in by if _ == "synthetic-1")
    assert differing > 0
    from db.agreement import dataset_stats

    a = dataset_stats(store, "synth")["agreement"]
    assert a.get("kendall_w", a.get("kendall_w_mean")) < 1.0


# ---- the report's arithmetic ------------------------------------------------------------------------


def test_wilson_interval_matches_known_values():
    from serving.loop.report import wilson_interval

    low, high = wilson_interval(7, 10)
    assert low == pytest.approx(0.3968, abs=1e-3) and high == pytest.approx(0.8922, abs=1e-3)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(50, 50)
    assert high == 1.0 and low > 0.9  # exactly 1: the interval must contain a win rate of 1.0
    assert wilson_interval(0, 50)[0] == 0.0


def test_arena_tally_counts_from_the_models_side_and_excludes_ties_from_the_rate():
    from serving.loop.report import arena_tally

    votes = [
        {"model_a": a, "model_b": b, "winner": w}
        for a, b, w in (("new", "old", "a"), ("old", "new", "b"), ("old", "new", "a"), ("new", "old", "tie"))
    ]
    t = arena_tally(votes, "new")
    assert (t["wins"], t["losses"], t["ties"], t["decided"], t["votes"]) == (2, 1, 1, 3, 4)
    assert t["win_rate"] == pytest.approx(2 / 3) and t["ci_low"] < 2 / 3 < t["ci_high"]
    assert arena_tally(votes, "old")["win_rate"] == pytest.approx(1 / 3)


def test_svg_plot_is_well_formed_xml():
    import xml.etree.ElementTree as ET

    from serving.loop.report import svg_plot

    root = ET.fromstring(svg_plot({"loss": [(1, 0.7), (2, 0.5), (3, 0.2)], "margin <&>": [(1, 0.0), (3, 1.5)]}, "t"))
    assert root.tag.endswith("svg") and len(root.findall("{http://www.w3.org/2000/svg}polyline")) == 2
    ET.fromstring(svg_plot({}, "empty"))


# ---- one short loop, end to end through the CLI --------------------------------------------------------


@pytest.mark.slow
def test_short_loop_end_to_end_report_numbers_are_consistent(run_cli, db_path, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PREFLAB_HOME", str(tmp_path / "home"))  # engine registry and run folders of this test
    out = tmp_path / "report"
    r = run_cli("loop", "--base", tiny_model_dir, "--preset", "test", "--name", "t", "--out", out, "--rounds", "2")
    assert r.exit_code == 0, r.output
    assert "win rate" in r.output and str(out) in r.output and "vs the loop's start" in r.output
    assert (out / "report.md").exists()
    summary = json.loads((out / "report.json").read_text(encoding="utf-8"))
    rnd, rnd2 = summary["rounds"]
    cfg = summary["config"]
    # round 2 samples from round 1's adapter and meets both it and the loop's start on the same prompts
    assert rnd2["sampling"]["model"] == rnd["lineage"]["adapter"] == rnd2["lineage"]["parent"]
    assert rnd2["arena_vs_start"]["parent"] == rnd["lineage"]["parent"] and "arena_vs_start" not in rnd
    assert rnd2["arena_vs_start"]["tally"]["votes"] == rnd2["arena"]["tally"]["votes"]

    from db.store import Store

    store = Store.open(db_path)
    try:
        # pairs = sum over rankings of C(K,2), minus ties; all of them stored, from synthetic rankings only
        ann = rnd["annotation"]
        ks = store.query(
            "SELECT count(*) AS k FROM rankings r JOIN ranking_items i ON i.ranking_id = r.id "
            "JOIN prompts p ON p.id = r.prompt_id JOIN datasets d ON d.id = p.dataset_id "
            "WHERE d.name = 't-r1' AND r.source = 'synthetic' GROUP BY r.id"
        )
        assert len(ks) == ann["rankings"] == ann["prompts"] * cfg["annotators"]
        assert ann["expected_pairs"] == sum(math.comb(row["k"], 2) for row in ks)
        assert ann["pairs"] + ann["ties"] == ann["expected_pairs"]
        stored = store.query(
            "SELECT count(*) FILTER (WHERE NOT is_tie) AS pairs, count(*) FILTER (WHERE is_tie) AS ties "
            "FROM pairs WHERE source = 'synthetic'"
        )[0]
        both = [x["annotation"] for x in (rnd, rnd2)]
        assert (stored["pairs"], stored["ties"]) == (sum(a["pairs"] for a in both), sum(a["ties"] for a in both))
        users = store.query(
            "SELECT DISTINCT u.kind FROM rankings r JOIN users u ON u.id = r.user_id WHERE r.source = 'synthetic'"
        )
        assert users == [{"kind": "synthetic"}]
        # votes = held-out prompts x turns, stored as arena votes; win rate = wins / decided
        arena = rnd["arena"]
        t = arena["tally"]
        assert t["votes"] == cfg["heldout_prompts"] * cfg["arena_turns"] == arena["stored_votes"]
        all_votes = t["votes"] + rnd2["arena"]["tally"]["votes"] + rnd2["arena_vs_start"]["tally"]["votes"]
        assert store.scalar("SELECT count(*) FROM arena_votes") == all_votes
        assert t["wins"] + t["losses"] + t["ties"] == t["votes"] and t["decided"] == t["wins"] + t["losses"]
        if t["decided"]:
            assert t["win_rate"] == pytest.approx(t["wins"] / t["decided"])
            assert t["ci_low"] <= t["win_rate"] <= t["ci_high"]
        child, parent = rnd["lineage"]["adapter"], rnd["lineage"]["parent"]
        assert {row["model"] for row in arena["leaderboard"]} == {child, parent}
        # the child is a LoRA adapter: its arena answers say so; the base-model parent's do not
        adapters = store.con.execute(
            "SELECT DISTINCT model, adapter FROM generations WHERE kind = 'arena' ORDER BY model"
        ).fetchall()
        assert {(child, child), (parent, None)} <= set(adapters)
    finally:
        store.close()
    # the snapshot has as many rows as the file, and its id is the lineage's
    snap = rnd["snapshot"]
    lines = [ln for ln in open(snap["path"], encoding="utf-8") if ln.strip()]
    assert len(lines) == snap["rows"] > 0
    assert {"prompt", "chosen", "rejected"} <= set(json.loads(lines[0]))
    assert rnd["lineage"]["snapshot_id"] == snap["snapshot_id"]
    # training wrote its curves and an adapter; the report shows the numbers it computed
    assert (out / "round-1" / "dpo" / "metrics.jsonl").exists()
    assert (out / "round-1" / "dpo" / "adapter" / "adapter_config.json").exists()
    report = (out / "report.md").read_text(encoding="utf-8")
    assert f"{t['wins']} wins, {t['losses']} losses, {t['ties']} ties" in report
    assert snap["snapshot_id"] in report
    assert "## Every round against the loop's start" in report
    assert report.count("| 1 | `") == 1 and report.count("| 2 | `") == 1  # one row per round
    chosen = [len(json.loads(ln)["chosen"]) for ln in lines]
    assert snap["mean_length"]["chosen"] == pytest.approx(sum(chosen) / len(chosen))
    # the loop's engine is stopped at the end
    from serving.engines import registry

    assert not [e for e in registry.list_engines() if e["alive"]]
