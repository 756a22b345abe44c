"""Style-controlled arena ratings (serving/arena/style.py): when voters prefer longer, more formatted answers and one
model simply writes longer ones, the raw rating favours it and the controlled rating does not."""

from __future__ import annotations

import numpy as np

from serving.arena.ratings import compute_leaderboard, encode_votes
from serving.arena.style import style_controlled, style_counts


def _votes(n=2000, seed=0):
    """Two models of equal quality: 'verbose' writes longer markdown answers, 'terse' shorter plain ones (their
    lengths overlap); voters lean towards the longer answer (logit 2.5 x the normalised length difference). A
    third model, 'good', is truly better (+1 logit) and writes like 'terse'."""
    rng = np.random.default_rng(seed)

    def answer(model: str) -> str:  # markdown in both styles, more often in the verbose one
        md = rng.random() < (0.7 if model == "verbose" else 0.3)
        head = "## Respuesta 📘\n" if md else ""
        line = "- **punto** detalles 中文\n" if md else "Sí, es así. 是的。 "
        return head + line * int(rng.integers(4, 20) if model == "verbose" else rng.integers(1, 10))

    strength = {"verbose": 0.0, "terse": 0.0, "good": 1.0}
    votes = []
    for _ in range(n):
        ma, mb = (str(m) for m in rng.choice(list(strength), size=2, replace=False))
        ta, tb = answer(ma), answer(mb)
        logit = strength[ma] - strength[mb] + 2.5 * (len(ta) - len(tb)) / (len(ta) + len(tb))
        win = "a" if rng.random() < 1 / (1 + np.exp(-logit)) else "b"
        votes.append({"model_a": ma, "model_b": mb, "winner": win, "text_a": ta, "text_b": tb})
    return votes


def test_style_control_removes_the_length_advantage():
    votes = _votes()
    raw = {r["model"]: r["rating"] for r in compute_leaderboard(votes).rows}
    models, a, b, s = encode_votes(votes)
    sc = style_controlled(
        models, a, b, s, [v["text_a"] for v in votes], [v["text_b"] for v in votes], bootstrap_rounds=50
    )
    ctl = {r["model"]: r for r in sc["rows"]}
    assert raw["verbose"] - raw["terse"] > 100  # raw: length buys a large lead
    assert abs(ctl["verbose"]["rating"] - ctl["terse"]["rating"]) < 60  # controlled: equal within noise
    assert ctl["good"]["rank"] == 1
    assert ctl["good"]["ci_low"] > max(ctl["verbose"]["ci_high"], ctl["terse"]["ci_high"]) - 1e-9
    assert sc["coefficients"]["length"] > 0


def test_style_counts_read_markdown():
    assert style_counts("# T\n\n- a\n1. b\n**x** and __y__") == (len("# T\n\n- a\n1. b\n**x** and __y__"), 1, 2, 2)
    assert style_counts("") == (0.0, 0, 0, 0)


def test_controlled_win_rate_sees_through_a_length_exploit():
    """The loop's case: a child that wins only by being shorter (the judge leans towards shorter answers: logit
    -4 x the normalised length difference) has a high raw win rate and a controlled one near 0.5."""
    from serving.arena.style import controlled_win_rate

    rng = np.random.default_rng(1)
    votes = []
    for _ in range(400):
        short, long = "Sí." * int(rng.integers(1, 4)), "Sí, claro que sí 🙂 " * int(rng.integers(3, 9))
        child_first = rng.random() < 0.5
        child_text = short if rng.random() < 0.9 else long
        parent_text = long if child_text == short else short
        ta, tb = (child_text, parent_text) if child_first else (parent_text, child_text)
        logit = -4.0 * (len(ta) - len(tb)) / (len(ta) + len(tb))
        votes.append(
            {
                "model_a": "child" if child_first else "parent",
                "model_b": "parent" if child_first else "child",
                "winner": "a" if rng.random() < 1 / (1 + np.exp(-logit)) else "b",
                "text_a": ta,
                "text_b": tb,
            }
        )
    models, a, b, s = encode_votes(votes)
    sc = style_controlled(models, a, b, s, [v["text_a"] for v in votes], [v["text_b"] for v in votes], samples=True)
    raw = sum((v["winner"] == "a") == (v["model_a"] == "child") for v in votes) / len(votes)
    ctl = controlled_win_rate(sc, "child", "parent")
    assert raw > 0.75 and sc["coefficients"]["length"] < 0
    assert ctl["ci_low"] < 0.5 < ctl["ci_high"] and raw > ctl["ci_high"]
