-- Sampling jobs: one row per `run_sampling` started by the server (or the CLI), so the UI can show
-- progress and the outcome. The answers themselves are generations rows (kind 'model') with provenance.
CREATE SEQUENCE seq_sampling_jobs START 1;

CREATE TABLE sampling_jobs (
    id INTEGER PRIMARY KEY DEFAULT nextval('seq_sampling_jobs'),
    dataset VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    engine VARCHAR,
    params JSON,                         -- n, temperature, top_p, max_tokens, seed, limit, concurrency
    status VARCHAR NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'finished', 'failed', 'cancelled')),
    prompts_total INTEGER NOT NULL DEFAULT 0,
    prompts_done INTEGER NOT NULL DEFAULT 0,
    answers_stored INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    report JSON,                         -- SamplingReport.as_dict() when it ends
    error VARCHAR,
    created_by VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    started_at TIMESTAMP,
    finished_at TIMESTAMP
);
