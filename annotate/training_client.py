"""The training calls of the HTTP API (serving/api/runs.py, serving/api/train_config.py), on top of
annotate.client.Client."""

from __future__ import annotations

from annotate.client import Client


def train_stages(client: Client) -> list[dict]:
    """The training stages in pipeline order, each with the config fields the Training page offers: name, type,
    default, value (the starting value to fill in), help, group, choices."""
    return client.get("/api/train/stages")["stages"]


def list_runs(client: Client) -> list[dict]:
    return client.get("/api/runs")


def get_run(client: Client, run_id: int) -> dict:
    return client.get(f"/api/runs/{run_id}")


def start_run(client: Client, **body) -> dict:
    return client.post("/api/runs", body)


def run_metrics(client: Client, run_id: int, since: int = 0) -> dict:
    return client.get(f"/api/runs/{run_id}/metrics", since=since)


def run_log(client: Client, run_id: int, lines: int = 60) -> str:
    return client.get(f"/api/runs/{run_id}/log", lines=lines)["log"]


def cancel_run(client: Client, run_id: int) -> dict:
    return client.post(f"/api/runs/{run_id}/cancel")


def resume_run(client: Client, run_id: int) -> dict:
    return client.post(f"/api/runs/{run_id}/resume")
