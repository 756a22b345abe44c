"""The CLI's HTTP transport (serving/cli/remote.py) against a real uvicorn server holding the database."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from db.errors import InputError, PrefLabError
from serving.cli import remote
from tests.support.data import PASSWORD, add_user

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture
def live(store, live_server, tmp_path, monkeypatch):
    """The PrefLab server over the test's store, users adm and ann, and adm signed in; yields (url, store)."""
    monkeypatch.setenv("PREFLAB_HOME", str(tmp_path / "home"))
    add_user(store, "adm", "admin")
    add_user(store, "ann", "annotator")
    url = live_server().url
    remote.login(url, "adm", PASSWORD)  # token file under PREFLAB_HOME
    return url, store


def test_import_stats_export_through_the_server(live, tmp_path):
    url, store = live
    report = remote.import_file(url, DATA / "ranked.jsonl", dataset="remote", fmt="ranked")
    assert report["added"]["prompts"] == 3 and report["file"] == "ranked.jsonl"
    again = remote.import_file(url, DATA / "ranked.jsonl", dataset="remote")  # detected, idempotent
    assert again["format"] == "ranked" and again["added"]["prompts"] == 0
    stats = remote.stats(url, dataset="remote")
    assert stats["counts"]["prompts"] == 3
    out = tmp_path / "out" / "prefs.jsonl"
    res = remote.export(url, "trl", out, dataset="remote")
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows and {"prompt", "chosen", "rejected"} <= set(rows[0])
    assert res["snapshot_id"] and res["paths"] == [str(out)]
    assert any("🥐" in r["prompt"] for r in rows)
    split = remote.export(url, "trl", tmp_path / "split" / "prefs.jsonl", dataset="remote", split="test=0.5")
    names = sorted(Path(p).name for p in split["paths"])
    assert "prefs_train.jsonl" in names and "prefs_test.jsonl" in names


def test_bad_upload_names_file_and_line_and_changes_nothing(live):
    url, store = live
    before = store.counts()
    with pytest.raises(InputError) as e:
        remote.import_file(url, DATA / "bad" / "broken_json.jsonl", dataset="x", fmt="ranked")
    assert "broken_json.jsonl:" in str(e.value)
    assert store.counts() == before


def test_errors_come_back_as_one_line(live, monkeypatch):
    url, store = live
    with pytest.raises(PrefLabError, match="no dataset named 'ghost'"):
        remote.stats(url, dataset="ghost")
    monkeypatch.setenv("PREFLAB_TOKEN", "bogus")
    with pytest.raises(PrefLabError, match="preflab login"):
        remote.stats(url)
    with pytest.raises(PrefLabError, match="cannot reach"):
        remote.stats("http://127.0.0.1:9")


def test_annotator_token_cannot_import(live, tmp_path):
    url, store = live
    remote.login(url, "ann", PASSWORD)
    with pytest.raises(PrefLabError, match="admin"):
        remote.import_file(url, DATA / "ranked.jsonl", dataset="remote")


def test_server_url_from_env_or_a_live_state_file_for_the_same_db(tmp_path, monkeypatch, db_path):
    import click

    from serving.cli.remote import server_url

    monkeypatch.setenv("PREFLAB_HOME", str(tmp_path))
    ctx = click.Context(click.Command("x"), obj={"db_path": str(db_path)})
    assert server_url(ctx) is None
    state = tmp_path / "server.json"
    state.write_text(json.dumps({"url": "http://127.0.0.1:8123", "pid": os.getpid(), "db": str(db_path.resolve())}))
    assert server_url(ctx) == "http://127.0.0.1:8123"
    other = click.Context(click.Command("x"), obj={"db_path": str(tmp_path / "other.duckdb")})
    assert server_url(other) is None  # a server of another database is not ours
    state.write_text(json.dumps({"url": "http://127.0.0.1:8123", "pid": 2**22 + 12345, "db": str(db_path)}))
    assert server_url(ctx) is None  # stale file of a killed server
    monkeypatch.setenv("PREFLAB_URL", "http://example.invalid:1/")
    assert server_url(ctx) == "http://example.invalid:1"


def test_cli_commands_go_through_the_running_server(live, run_cli, tmp_path, monkeypatch):
    url, store = live
    monkeypatch.setenv("PREFLAB_URL", url)
    assert run_cli("logout").exit_code == 0 and not remote.token_path().exists()
    r = run_cli("login", "adm", "--password-stdin", input="wrong password\n")
    assert r.exit_code == 1 and "wrong user name or password" in r.output
    r = run_cli("login", "adm", "--password-stdin", input=PASSWORD + "\n")
    assert r.exit_code == 0, r.output
    assert remote.token_path().stat().st_mode & 0o077 == 0  # readable by this user only
    r = run_cli("import", DATA / "ranked.jsonl", "--dataset", "cli-remote")
    assert r.exit_code == 0, r.output
    assert f"via {url}" in r.output and "3 prompts" in r.output
    r = run_cli("import", DATA / "bad" / "broken_json.jsonl", "--dataset", "cli-remote", "--format", "ranked")
    assert r.exit_code == 1 and "broken_json.jsonl:" in r.output
    r = run_cli("stats", "--dataset", "cli-remote", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["counts"]["prompts"] == 3
    out = tmp_path / "cli-out.jsonl"
    r = run_cli("export", "--format", "trl", "--out", out, "--dataset", "cli-remote")
    assert r.exit_code == 0, r.output
    assert f"via {url}" in r.output and out.read_text(encoding="utf-8").count("\n") >= 1
    r = run_cli("sample", "--dataset", "cli-remote", "--model", "no-such-model")
    assert r.exit_code == 1 and "no-such-model" in r.output
