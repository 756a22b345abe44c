"""PrefLab's data layer: the DuckDB schema, the Store, import/export formats, the queue, pairs and agreement.

db/ owns everything that reads or writes the database: the schema and its name-keyed migrations
(db/migrations/), the Store (db/store.py: the one connection and its lock), imports (db/importers/), exports
and snapshots (db/export/), the assignment queue (db/queue/), and the maths on stored judgments
(db/consensus.py, db/agreement.py). It imports nothing else of PrefLab's and never imports torch, streamlit or
HTTP frameworks (docs/architecture.md; the contracts in pyproject.toml check the layers).
"""
