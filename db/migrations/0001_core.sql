-- The core of PrefLab: what people rank and what that ranking says.
-- Every row records who or what made it (created_by) and when (created_at).

CREATE SEQUENCE seq_datasets START 1;
CREATE SEQUENCE seq_prompts START 1;
CREATE SEQUENCE seq_generations START 1;
CREATE SEQUENCE seq_users START 1;
CREATE SEQUENCE seq_assignments START 1;
CREATE SEQUENCE seq_rankings START 1;
CREATE SEQUENCE seq_pairs START 1;
CREATE SEQUENCE seq_examples START 1;
CREATE SEQUENCE seq_arena_votes START 1;
CREATE SEQUENCE seq_runs START 1;
CREATE SEQUENCE seq_models START 1;

CREATE TABLE datasets (
    id INTEGER PRIMARY KEY DEFAULT nextval('seq_datasets'),
    name VARCHAR NOT NULL UNIQUE,
    description VARCHAR,
    -- how many annotators rank each prompt (k); the assignment queue never hands out more
    annotators_per_prompt INTEGER NOT NULL DEFAULT 1 CHECK (annotators_per_prompt >= 1),
    guidelines VARCHAR,                  -- markdown shown to annotators
    guideline_version INTEGER NOT NULL DEFAULT 1,
    created_by VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- A prompt is a conversation context: an optional system message plus turns, ending on a user turn.
CREATE TABLE prompts (
    id BIGINT PRIMARY KEY DEFAULT nextval('seq_prompts'),
    dataset_id INTEGER NOT NULL REFERENCES datasets (id),
    messages JSON NOT NULL,              -- [{"role": "system"|"user"|"assistant", "content": "..."}]
    content_hash VARCHAR NOT NULL,       -- db.hashing.prompt_hash(messages): dedupes re-imports
    source VARCHAR,                      -- file or job that brought it in
    external_id VARCHAR,                 -- the id in the source (oasst message_id, ...)
    metadata JSON,
    assets JSON,                         -- image or other asset paths (absolute), for visual questions
    created_by VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    UNIQUE (dataset_id, content_hash)
);

-- An answer to a prompt: sampled by a model, or written by a person (kind = 'reference').
CREATE TABLE generations (
    id BIGINT PRIMARY KEY DEFAULT nextval('seq_generations'),
    prompt_id BIGINT NOT NULL REFERENCES prompts (id),
    text VARCHAR NOT NULL,
    content_hash VARCHAR NOT NULL,       -- sha256 of text: one row per distinct answer per prompt
    kind VARCHAR NOT NULL DEFAULT 'model' CHECK (kind IN ('model', 'reference', 'imported', 'arena')),
    model VARCHAR,
    adapter VARCHAR,
    engine VARCHAR,
    params JSON,                         -- sampling parameters (temperature, top_p, max_tokens, n, ...)
    seed BIGINT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    latency_ms DOUBLE,
    finish_reason VARCHAR,
    metadata JSON,
    created_by VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    UNIQUE (prompt_id, content_hash)
);

CREATE TABLE users (
    id INTEGER PRIMARY KEY DEFAULT nextval('seq_users'),
    name VARCHAR NOT NULL UNIQUE,
    role VARCHAR NOT NULL CHECK (role IN ('annotator', 'reviewer', 'admin')),
    password_hash VARCHAR,               -- NULL: cannot log in (imported or synthetic annotators)
    disabled BOOLEAN NOT NULL DEFAULT false,
    kind VARCHAR NOT NULL DEFAULT 'human' CHECK (kind IN ('human', 'imported', 'consensus', 'synthetic')),
    created_by VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- A slot of the queue: one annotator holds one prompt under a lease until they submit or it expires.
CREATE TABLE assignments (
    id BIGINT PRIMARY KEY DEFAULT nextval('seq_assignments'),
    prompt_id BIGINT NOT NULL REFERENCES prompts (id),
    user_id INTEGER NOT NULL REFERENCES users (id),
    status VARCHAR NOT NULL DEFAULT 'leased' CHECK (status IN ('leased', 'done', 'expired', 'released')),
    answer_order JSON,                   -- generation ids in the order this annotator sees them
    leased_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    expires_at TIMESTAMP NOT NULL,
    created_by VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- One ranking per annotator per prompt (Argilla's rule): enforced here, not in application code.
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
    UNIQUE (prompt_id, user_id)
);

-- The rank of each answer in a ranking: 1 is best, equal ranks are ties.
CREATE TABLE ranking_items (
    ranking_id BIGINT NOT NULL REFERENCES rankings (id),
    generation_id BIGINT NOT NULL REFERENCES generations (id),
    rank INTEGER NOT NULL CHECK (rank >= 1),
    position INTEGER,                    -- where the annotator saw it (0-based), for position-bias checks
    PRIMARY KEY (ranking_id, generation_id)
);

-- Pairs derived from rankings in SQL (db.store.Store.derive_pairs): every two answers of one ranking.
-- For a tie, chosen/rejected are ordered by generation id and is_tie is true.
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

-- Labelled examples (classification data): kept as they came, exportable again; not preferences.
CREATE TABLE examples (
    id BIGINT PRIMARY KEY DEFAULT nextval('seq_examples'),
    dataset_id INTEGER NOT NULL REFERENCES datasets (id),
    text VARCHAR NOT NULL,
    label VARCHAR NOT NULL,
    content_hash VARCHAR NOT NULL,
    metadata JSON,
    source VARCHAR,
    created_by VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    UNIQUE (dataset_id, content_hash)
);

-- Models and LoRA adapters that engines serve and the arena compares.
CREATE TABLE models (
    id INTEGER PRIMARY KEY DEFAULT nextval('seq_models'),
    name VARCHAR NOT NULL UNIQUE,
    kind VARCHAR NOT NULL CHECK (kind IN ('base', 'adapter', 'merged', 'external')),
    base VARCHAR,                        -- base model path or name
    path VARCHAR,                        -- adapter or model folder
    stage VARCHAR,                       -- sft | reward | ppo | rloo | grpo | dpo
    parent VARCHAR,                      -- parent adapter name
    run_id INTEGER,
    snapshot_id VARCHAR,
    metrics JSON,
    created_by VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- Training runs; the run directory holds config, metrics.jsonl, logs, checkpoints and the adapter.
CREATE TABLE runs (
    id INTEGER PRIMARY KEY DEFAULT nextval('seq_runs'),
    stage VARCHAR NOT NULL,
    status VARCHAR NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'finished', 'failed', 'cancelled')),
    run_dir VARCHAR NOT NULL,
    base VARCHAR,
    parent VARCHAR,
    snapshot_id VARCHAR,
    config JSON,
    metrics JSON,
    pid INTEGER,
    error VARCHAR,
    created_by VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    started_at TIMESTAMP,
    finished_at TIMESTAMP
);

-- Blind A/B votes from the arena; a vote also becomes a two-answer ranking (source = 'arena').
CREATE TABLE arena_votes (
    id BIGINT PRIMARY KEY DEFAULT nextval('seq_arena_votes'),
    prompt_id BIGINT REFERENCES prompts (id),
    model_a VARCHAR NOT NULL,
    model_b VARCHAR NOT NULL,
    generation_a BIGINT REFERENCES generations (id),
    generation_b BIGINT REFERENCES generations (id),
    winner VARCHAR NOT NULL CHECK (winner IN ('a', 'b', 'tie', 'both_bad')),
    identity_leak BOOLEAN NOT NULL DEFAULT false,
    rag_collection VARCHAR,
    user_id INTEGER REFERENCES users (id),
    metadata JSON,
    created_by VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
