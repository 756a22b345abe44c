"""The PrefLab server's HTTP surface: the FastAPI app (app.py), its data API under /api and the
OpenAI-compatible gateway under /v1 (gateway.py).

It owns request handling: sign-in and roles (security.py, deps.py), one router module per area (auth, queue,
data, review, sampling, runs, train_config, arena, loops), and the queue's in-memory front (queue_front.py).
It never writes SQL (db/ does, through the Store) and never runs a model or a training step in the server
process: engines are other processes, training runs are subprocesses of serving.jobs.
"""
