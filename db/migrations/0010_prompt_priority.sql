-- Active selection: a score per prompt saying how much a label there is worth now (higher first), and the
-- per-dataset choice of whether the queue and the sampler follow it.
--
-- The scores are written by `preflab prioritize` (serving.active): 'ensemble' scores for prompts with answers
-- (how unsure a bootstrap ensemble of reward models is about their order), 'novelty' scores for prompts without
-- answers (how far a prompt lies from those already labelled). Recomputing replaces a dataset's rows.
CREATE TABLE prompt_priority (
    prompt_id BIGINT PRIMARY KEY REFERENCES prompts (id),
    dataset_id INTEGER NOT NULL REFERENCES datasets (id),
    score DOUBLE NOT NULL,
    estimator VARCHAR NOT NULL CHECK (estimator IN ('ensemble', 'novelty')),
    computed_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
CREATE INDEX prompt_priority_dataset ON prompt_priority (dataset_id);

-- 'order': the queue hands out prompts in id order (the default); 'uncertainty': highest prompt_priority score
-- first, prompts without a score after the scored ones, in id order. db.settings checks the value.
ALTER TABLE dataset_settings ADD COLUMN selection VARCHAR DEFAULT 'order';
