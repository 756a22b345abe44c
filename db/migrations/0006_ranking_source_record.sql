-- A ranking's identity is its source record, not only its annotator and prompt: two records of one file
-- that rank answers to the same prompt (OpenAssistant trees that open with the same message, two comment
-- pairs under one post) are two rankings. rankings.source_record names the record (a file-independent id,
-- or a content hash where the record has none); people in the queue have '' there, so for them the rule
-- stays one ranking per person per prompt.
--
-- DuckDB cannot change a UNIQUE constraint in place, nor add a column to (or drop) a table that another
-- table references by FOREIGN KEY ("Cannot alter entry "rankings" because there are entries that depend on
-- it"). So rankings and the two tables that reference it, ranking_items and pairs, are rebuilt with their
-- rows: copied aside, dropped dependants first, created again, copied back. One transaction: all or nothing.

CREATE TEMP TABLE m6_rankings AS SELECT * FROM rankings;
CREATE TEMP TABLE m6_items AS SELECT * FROM ranking_items;
CREATE TEMP TABLE m6_pairs AS SELECT * FROM pairs;
DROP TABLE pairs;
DROP TABLE ranking_items;
DROP TABLE rankings;

CREATE TABLE rankings (
    id BIGINT PRIMARY KEY DEFAULT nextval('seq_rankings'),
    prompt_id BIGINT NOT NULL REFERENCES prompts (id),
    user_id INTEGER NOT NULL REFERENCES users (id),
    status VARCHAR NOT NULL CHECK (status IN ('submitted', 'skipped', 'flagged')),
    source VARCHAR NOT NULL DEFAULT 'human'
        CHECK (source IN ('human', 'import', 'consensus', 'adjudication', 'arena', 'synthetic')),
    all_bad BOOLEAN NOT NULL DEFAULT false,
    skip_reason VARCHAR,
    flag_reason VARCHAR,
    comment VARCHAR,
    time_on_task_ms BIGINT,
    guideline_version INTEGER,
    created_by VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    -- the imported record this ranking came from ('' for rankings made in PrefLab): see db/importers
    source_record VARCHAR NOT NULL DEFAULT '',
    UNIQUE (prompt_id, user_id, source_record)
);

CREATE TABLE ranking_items (
    ranking_id BIGINT NOT NULL REFERENCES rankings (id),
    generation_id BIGINT NOT NULL REFERENCES generations (id),
    rank INTEGER NOT NULL CHECK (rank >= 1),
    position INTEGER,                    -- where the annotator saw it (0-based), for position-bias checks
    PRIMARY KEY (ranking_id, generation_id)
);

CREATE TABLE pairs (
    id BIGINT PRIMARY KEY DEFAULT nextval('seq_pairs'),
    ranking_id BIGINT NOT NULL REFERENCES rankings (id),
    prompt_id BIGINT NOT NULL REFERENCES prompts (id),
    chosen_id BIGINT NOT NULL REFERENCES generations (id),
    rejected_id BIGINT NOT NULL REFERENCES generations (id),
    margin INTEGER NOT NULL,             -- rank distance: rejected rank - chosen rank (0 for ties)
    is_tie BOOLEAN NOT NULL,
    source VARCHAR NOT NULL,             -- copied from the ranking: human | import | arena | ...
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    UNIQUE (ranking_id, chosen_id, rejected_id)
);

-- Imported rankings get the source_record their importer gives them today, so importing the same file
-- again after this migration still adds nothing: an OpenAssistant ranking is named by its prompt message
-- (prompts.external_id), any other by the hash of its prompt and its answers' ranks in shown order
-- (db.importers.fields.ranking_record).
INSERT INTO rankings (id, prompt_id, user_id, status, source, all_bad, skip_reason, flag_reason, comment,
                      time_on_task_ms, guideline_version, created_by, created_at, source_record)
SELECT r.id, r.prompt_id, r.user_id, r.status, r.source, r.all_bad, r.skip_reason, r.flag_reason, r.comment,
       r.time_on_task_ms, r.guideline_version, r.created_by, r.created_at,
       CASE
           WHEN r.created_by NOT LIKE 'import:%' THEN ''
           WHEN r.source = 'consensus' AND p.external_id <> '' THEN 'oasst:' || p.external_id
           ELSE sha256(p.content_hash || ':' || (SELECT string_agg(g.content_hash || '=' || i.rank, ','
                                                                   ORDER BY i.position, g.content_hash)
                                                 FROM m6_items i JOIN generations g ON g.id = i.generation_id
                                                 WHERE i.ranking_id = r.id))
       END
FROM m6_rankings r JOIN prompts p ON p.id = r.prompt_id
ORDER BY r.id;
INSERT INTO ranking_items SELECT * FROM m6_items;
INSERT INTO pairs SELECT * FROM m6_pairs;
DROP TABLE m6_rankings;
DROP TABLE m6_items;
DROP TABLE m6_pairs;
