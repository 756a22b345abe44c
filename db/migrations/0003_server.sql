-- The PrefLab server: sign-in tokens and the assignment queue's bookkeeping.

-- API tokens: only a sha256 of the token is stored, so a copy of the database does not sign anyone in.
CREATE TABLE api_tokens (
    token_hash VARCHAR PRIMARY KEY,
    user_id INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    expires_at TIMESTAMP NOT NULL
);

-- Open prompts of each dataset: eligible (>= 2 answers) and ranked by fewer than k annotators.
-- A prompt leaves this table when it is complete, so the queue scans only what is still open.
-- `done` counts submitted rankings; live leases are counted from assignments at query time.
CREATE TABLE queue_open (
    prompt_id BIGINT PRIMARY KEY,
    dataset_id INTEGER NOT NULL,
    done INTEGER NOT NULL DEFAULT 0
);

-- How far queue_open has caught up with generations and rankings written by anyone (importer,
-- sampler, server): rows with ids above the marks are folded in on the next queue request.
CREATE TABLE queue_sync (
    dataset_id INTEGER PRIMARY KEY,
    generation_mark BIGINT NOT NULL,
    ranking_mark BIGINT NOT NULL,
    k INTEGER NOT NULL
);
