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
    prompt_id BIGINT NOT NULL REFERENCES gold_items (prompt_id),
    generation_id BIGINT NOT NULL REFERENCES generations (id),
    rank INTEGER NOT NULL CHECK (rank >= 1),
    PRIMARY KEY (prompt_id, generation_id)
);
