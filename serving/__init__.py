"""PrefLab's outermost layer: everything that runs a process or answers a request.

It owns the `preflab` command (cli/), the server with its /api routes and the /v1 gateway (api/), the one
runner of background jobs (jobs.py), inference engines (engines/), sampling (sampling/), retrieval (rag/), the
arena (arena/), the closed loop (loop/) and `preflab up` (stack.py). It may import alignment/ and db/; it
never writes SQL (db/ does) and never renders UI (annotate/ does).
"""
