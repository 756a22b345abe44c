"""SQL for the synthetic annotator (serving/loop/synthetic.py): the answers it ranks and what its rankings added.

after_ranking, after_pair = last_ids(store)
store.write_batch(dataset, batch, created_by="synthetic-annotator")
pairs, ties, expected = pairs_added(store, dataset_id, after_ranking=after_ranking, after_pair=after_pair)
"""

from __future__ import annotations


def model_answers(store, dataset_id: int) -> list[dict]:
    """Every model answer of the dataset with its prompt, in prompt then answer order: prompt_id, prompt_key (the
    prompt's content hash), messages (JSON text), text, gen_key (the answer's content hash). References and
    other human answers are left out: the synthetic annotator ranks what models wrote."""
    return store.query(
        "SELECT p.id AS prompt_id, p.content_hash AS prompt_key, CAST(p.messages AS VARCHAR) AS messages, "
        "g.text, g.content_hash AS gen_key FROM prompts p JOIN generations g ON g.prompt_id = p.id "
        "WHERE p.dataset_id = ? AND g.kind = 'model' ORDER BY p.id, g.id",
        [dataset_id],
    )


def last_ids(store) -> tuple[int, int]:
    """(highest ranking id, highest pair id), 0 when there are none: rows a write adds come after them."""
    row = store.row("SELECT coalesce(max(id), 0) AS id FROM rankings")
    pair = store.row("SELECT coalesce(max(id), 0) AS id FROM pairs")
    return row["id"], pair["id"]


def pairs_added(store, dataset_id: int, *, after_ranking: int, after_pair: int) -> tuple[int, int, int]:
    """(pairs, ties, expected pairs) that synthetic rankings added after the given ids: the pairs and ties stored
    with source synthetic, and K(K-1)/2 summed over the dataset's new synthetic rankings of K answers, which the
    two must add up to."""
    stats = store.row(
        "SELECT count(*) FILTER (WHERE NOT is_tie) AS pairs, count(*) FILTER (WHERE is_tie) AS ties FROM pairs "
        "WHERE id > ? AND source = 'synthetic'",
        [after_pair],
    )
    expected = store.scalar(
        "SELECT coalesce(sum(n * (n - 1) / 2), 0) FROM (SELECT r.id, count(*) AS n FROM rankings r "
        "JOIN ranking_items i ON i.ranking_id = r.id JOIN prompts p ON p.id = r.prompt_id "
        "WHERE p.dataset_id = ? AND r.source = 'synthetic' AND r.id > ? GROUP BY r.id)",
        [dataset_id, after_ranking],
    )
    return int(stats["pairs"] or 0), int(stats["ties"] or 0), int(expected)
