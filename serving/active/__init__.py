"""Active selection: which prompts a label is worth most on, so the same reward model needs fewer labels.

`ensemble` holds the estimate (numpy only): a bootstrap ensemble of Bradley-Terry reward models over frozen
sentence embeddings, the uncertainty of a prompt's answer order, and the novelty of a prompt without answers.
`prioritize` fits it on a dataset's consensus pairs and stores a score per prompt (db.priority), which the queue
follows when the dataset's selection is 'uncertainty' and `preflab sample --select uncertainty` follows too.

    from serving.active.prioritize import prioritize
    report = prioritize(store, "demo")          # {"scored": ..., "ensemble": ..., "novelty": ..., "pairs": ...}
"""
