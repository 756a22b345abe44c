"""PrefLab's data layer: the DuckDB schema, the Store, import/export formats, pairs and agreement.

Never imports torch, streamlit or HTTP frameworks (see docs/architecture.md).
"""
