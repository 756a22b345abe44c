-- pairs without per-row index maintenance. Its PRIMARY KEY, UNIQUE (ranking_id, chosen_id, rejected_id) and four
-- FOREIGN KEYs each kept an ART index that DuckDB updated and checked row by row: for 1,000,000 rankings of K=4
-- that is 6,000,000 rows through six indexes, a large share of an import (docs/benchmarks.md, bench/pairs.py).
-- What they guaranteed holds by construction instead:
--   * one row per (ranking, chosen, rejected): pairs are only ever written for a ranking that has none, from that
--     ranking's ranking_items (PRIMARY KEY (ranking_id, generation_id)), every two distinct answers once:
--     Store._derive_pairs_for for new rankings (imports) and after DELETE FROM pairs WHERE ranking_id = ...
--     (derive_pairs, db/history.py, db/review.py), and db/queue/submits.write_items for a new or cleared ranking;
--   * its ids exist: ranking_id, prompt_id, chosen_id and rejected_id are copied from rankings and ranking_items,
--     whose own foreign keys stand, and an answer or ranking with items cannot be deleted (ranking_items
--     references both), while pairs are deleted together with their ranking's items;
--   * id is unique: it comes from seq_pairs.
-- Nothing references pairs, so it is rebuilt alone, its rows copied in id order. Lookups by ranking_id scan
-- with zone maps (rows are inserted ranking by ranking), so no index replaces the old ones.
-- tests/db/test_bulk_load.py checks each guarantee and that this migration keeps every row.

CREATE TEMP TABLE m8_pairs AS SELECT * FROM pairs;
DROP TABLE pairs;

CREATE TABLE pairs (
    id BIGINT NOT NULL DEFAULT nextval('seq_pairs'),
    ranking_id BIGINT NOT NULL,          -- rankings (id)
    prompt_id BIGINT NOT NULL,           -- prompts (id)
    chosen_id BIGINT NOT NULL,           -- generations (id)
    rejected_id BIGINT NOT NULL,         -- generations (id)
    margin INTEGER NOT NULL,             -- rank distance: rejected rank - chosen rank (0 for ties)
    is_tie BOOLEAN NOT NULL,
    source VARCHAR NOT NULL,             -- copied from the ranking: human | import | arena | ...
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

INSERT INTO pairs SELECT * FROM m8_pairs ORDER BY id;
DROP TABLE m8_pairs;
