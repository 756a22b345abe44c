-- Feedback beyond an order: aspect ratings per answer, a rationale and details per ranking, and binary
-- (thumbs up/down) feedback on single answers. Imports (ultrafeedback, helpsteer, kto, shp) and the annotation
-- app write the same tables.

-- A rating belongs to a ranking, the judgment one annotator made of one prompt's answers: the annotator, the
-- prompt, the source and the time come from there. One value per answer and aspect.
CREATE TABLE ratings (
    ranking_id BIGINT NOT NULL REFERENCES rankings (id),
    generation_id BIGINT NOT NULL REFERENCES generations (id),
    aspect VARCHAR NOT NULL,             -- helpfulness, honesty, ... (a dataset's configured names, or a file's)
    value DOUBLE,                        -- on the aspect's scale; NULL: rated "not applicable"
    rationale VARCHAR,                   -- why this rating (free text)
    metadata JSON,                       -- what else the source said of it (UltraFeedback's "Type", ...)
    PRIMARY KEY (ranking_id, generation_id, aspect)
);

-- What a ranking says beyond its order: the annotator's rationale, and the source's per-judgment fields (SHP's
-- score_ratio, UltraFeedback's principle, ...). At most one row per ranking.
CREATE TABLE ranking_notes (
    ranking_id BIGINT PRIMARY KEY REFERENCES rankings (id),
    rationale VARCHAR,
    metadata JSON
);

-- Binary feedback on one answer: desirable (true) or not. Unpaired, so it never becomes pairs; TRL's KTO reads it.
CREATE SEQUENCE seq_feedback START 1;
CREATE TABLE feedback (
    id BIGINT PRIMARY KEY DEFAULT nextval('seq_feedback'),
    prompt_id BIGINT NOT NULL REFERENCES prompts (id),
    generation_id BIGINT NOT NULL REFERENCES generations (id),
    user_id INTEGER NOT NULL REFERENCES users (id),
    label BOOLEAN NOT NULL,
    source VARCHAR NOT NULL DEFAULT 'human'
        CHECK (source IN ('human', 'import', 'arena', 'chat', 'synthetic')),
    comment VARCHAR,
    -- the imported record it came from ('' for feedback given in PrefLab): see db/importers
    source_record VARCHAR NOT NULL DEFAULT '',
    created_by VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    UNIQUE (generation_id, user_id, source_record)
);
