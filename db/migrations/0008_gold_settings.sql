-- Gold items (prompts whose answer order is known), a dataset's annotation settings and reviewers' controls on
-- annotators.
--
-- Gold items: prompts whose answer order is known, mixed into the queue to measure annotators. A gold prompt's
-- rankings are checks, never training data: they fill no slot (k) and give no consensus pairs.

CREATE TABLE gold_items (
    prompt_id BIGINT PRIMARY KEY REFERENCES prompts (id),
    kind VARCHAR NOT NULL CHECK (kind IN ('order', 'best')),  -- the whole known order, or only the best answer
    created_by VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- The known order: rank 1 is best, equal ranks are answers the order does not separate. For kind 'best' the best
-- answer has rank 1 and every other answer rank 2.
CREATE TABLE gold_answers (
    prompt_id BIGINT NOT NULL REFERENCES prompts (id),  -- (not gold_items: DuckDB cannot delete both in one transaction)
    generation_id BIGINT NOT NULL REFERENCES generations (id),
    rank INTEGER NOT NULL CHECK (rank >= 1),
    PRIMARY KEY (prompt_id, generation_id)
);

-- A dataset's annotation settings beyond k and guidelines; a dataset without a row has the defaults.
CREATE TABLE dataset_settings (
    dataset_id INTEGER PRIMARY KEY REFERENCES datasets (id),
    gold_rate DOUBLE NOT NULL DEFAULT 0.05 CHECK (gold_rate >= 0 AND gold_rate <= 0.5),  -- share of items that are gold
    -- what an item asks: 'rank' the answers, or 'rate' each answer thumbs up or down (binary feedback, no pairs)
    task VARCHAR NOT NULL DEFAULT 'rank' CHECK (task IN ('rank', 'rate')),
    -- aspect ratings asked per answer beside the ranking: [{"name", "min", "max", "description", "required"}];
    -- NULL: none
    aspects JSON,
    rationale VARCHAR NOT NULL DEFAULT 'off' CHECK (rationale IN ('off', 'optional', 'required'))
);

-- A reviewer's say on one annotator in one dataset: paused (gets no new items) and the weight of their votes in
-- quality-weighted consensus (0 excludes them; 1 is the default).
CREATE TABLE annotator_controls (
    dataset_id INTEGER NOT NULL REFERENCES datasets (id),
    user_id INTEGER NOT NULL REFERENCES users (id),
    paused BOOLEAN NOT NULL DEFAULT false,
    weight DOUBLE NOT NULL DEFAULT 1.0 CHECK (weight >= 0 AND weight <= 1),
    updated_by VARCHAR NOT NULL,
    updated_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (dataset_id, user_id)
);
