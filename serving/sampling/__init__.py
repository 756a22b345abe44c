"""Sampling n answers per prompt from an engine and storing them with their provenance.

sampler.py fans prompts out to any OpenAI-compatible engine over async HTTP (the server's sampling jobs and
the loop use it); offline.py runs the same through vLLM's offline API when no server is wanted. It never
starts an engine itself (serving.engines does) and never writes SQL (db.sampling does).
"""
