"""Inference engines, the sampler, the PrefLab server (data API + OpenAI-compatible gateway), RAG, ratings."""
