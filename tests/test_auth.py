"""Sign-in, tokens, roles: wrong passwords, expired tokens, role escalation, disabled users, public bind."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from server_helpers import PASSWORD, add_user, signed_in

from db import users
from db.errors import PrefLabError
from serving.server import ServerConfig, check_public_bind, create_app


@pytest.fixture
def app_store(store):
    for name, role in (("ann", "annotator"), ("rev", "reviewer"), ("adm", "admin")):
        add_user(store, name, role)
    return store


@pytest.fixture
def client(app_store):
    with TestClient(create_app(app_store)) as c:
        yield c


@pytest.fixture(scope="module")
def annotator_client(tmp_path_factory):
    """One server for the role checks below (signing in is deliberately slow)."""
    from db.store import Store

    s = Store.open(tmp_path_factory.mktemp("roles") / "roles.duckdb")
    add_user(s, "ann", "annotator")
    with TestClient(create_app(s)) as c:
        c.headers.update(signed_in(c, "ann"))
        yield c
    s.close()


def test_password_is_stored_as_argon2_hash(app_store):
    h = users.get_user(app_store, "ann", with_hash=True)["password_hash"]
    assert h.startswith("$argon2id$") and PASSWORD not in h


def test_wrong_password_and_unknown_user_get_the_same_401(client):
    wrong = client.post("/api/auth/login", json={"name": "ann", "password": "nope nope"})
    unknown = client.post("/api/auth/login", json={"name": "nobody", "password": "nope nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert set(wrong.json()["error"]) == {"message", "field"}


def test_login_me_and_logout(client):
    r = client.post("/api/auth/login", json={"name": "ann", "password": PASSWORD})
    assert r.status_code == 200
    body = r.json()
    assert body["user"] == {"id": body["user"]["id"], "name": "ann", "role": "annotator"} and body["expires_at"]
    h = {"Authorization": f"Bearer {body['token']}"}
    assert client.get("/api/me", headers=h).json()["name"] == "ann"
    assert client.post("/api/auth/logout", headers=h).status_code == 200
    assert client.get("/api/me", headers=h).status_code == 401


def test_missing_or_garbage_token_is_401(client):
    assert client.get("/api/me").status_code == 401
    r = client.get("/api/me", headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 401 and r.json()["error"]["field"] == "Authorization"


def test_expired_token_is_refused(app_store):
    with TestClient(create_app(app_store, ServerConfig(token_ttl_s=1))) as c:
        h = signed_in(c, "ann")
        assert c.get("/api/me", headers=h).status_code == 200
        time.sleep(1.2)
        r = c.get("/api/me", headers=h)
        assert r.status_code == 401 and "expired" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "method,path",
    [
        ("get", "/api/users"),
        ("post", "/api/users"),
        ("patch", "/api/users/ann"),
        ("get", "/api/export"),
        ("post", "/api/import"),
        ("get", "/api/stats"),
        ("get", "/api/review/disagreements"),
        ("get", "/api/prompts/1/rankings"),
        ("post", "/api/adjudications"),
        ("get", "/api/stats/activity"),
        ("post", "/api/datasets"),
        ("patch", "/api/datasets/d"),
        ("get", "/api/sampling-jobs"),
        ("post", "/api/sampling-jobs"),
        ("get", "/api/engines"),
    ],
)
def test_annotator_cannot_reach_reviewer_or_admin_routes(annotator_client, method, path):
    r = getattr(annotator_client, method)(path, **({"json": {}} if method in ("post", "patch") else {}))
    assert r.status_code == 403, (path, r.text)
    assert "admin" in r.json()["error"]["message"] or "reviewer" in r.json()["error"]["message"]


def test_reviewer_sees_review_but_not_admin_routes(client, app_store):
    app_store.ensure_dataset("d", created_by="test")
    h = signed_in(client, "rev")
    assert client.get("/api/stats", headers=h, params={"dataset": "d"}).status_code == 200
    assert client.get("/api/review/disagreements", headers=h).status_code == 200
    assert client.get("/api/users", headers=h).status_code == 403
    assert client.post("/api/users", headers=h, json={"name": "x", "password": "abcdefgh"}).status_code == 403


def test_admin_manages_users_and_disabled_user_is_locked_out(client):
    adm = signed_in(client, "adm")
    r = client.post("/api/users", headers=adm, json={"name": "zoë 張", "role": "annotator", "password": "pässwörd"})
    assert r.status_code == 201 and r.json()["name"] == "zoë 張"
    assert client.post("/api/users", headers=adm, json={"name": "zoë 張", "password": "pässwörd"}).status_code == 409
    zoe = signed_in(client, "zoë 张".replace("张", "張"), "pässwörd")
    assert client.get("/api/me", headers=zoe).status_code == 200
    assert client.patch("/api/users/zoë 張", headers=adm, json={"role": "reviewer"}).json()["role"] == "reviewer"
    assert client.get("/api/me", headers=zoe).json()["role"] == "reviewer"  # not the remembered sign-in's role
    assert client.patch("/api/users/zoë 張", headers=adm, json={"disabled": True}).json()["disabled"] is True
    assert client.get("/api/me", headers=zoe).status_code == 401  # their token stopped working at once
    assert client.post("/api/auth/login", json={"name": "zoë 張", "password": "pässwörd"}).status_code == 401
    client.patch("/api/users/zoë 張", headers=adm, json={"disabled": False, "password": "new secret"})
    assert client.post("/api/auth/login", json={"name": "zoë 張", "password": "pässwörd"}).status_code == 401
    signed_in(client, "zoë 張", "new secret")
    assert client.patch("/api/users/nobody", headers=adm, json={"role": "admin"}).status_code == 404
    bad = client.patch("/api/users/ann", headers=adm, json={"role": "root"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "role"
    assert client.patch("/api/users/adm", headers=adm, json={"disabled": True}).status_code == 400


def test_public_bind_refused_with_demo_password(store):
    add_user(store, "admin", "admin", password="admin")
    check_public_bind(store, "127.0.0.1")  # localhost is fine
    with pytest.raises(PrefLabError, match="admin.*default or demo password"):
        check_public_bind(store, "0.0.0.0")
    from serving.auth import hash_password

    users.update_user(store, "admin", password_hash=hash_password("a long real passphrase"))
    check_public_bind(store, "0.0.0.0")


def test_user_cli_add_list_role_disable(run_cli, store):
    store.close()  # the CLI opens the file itself
    r = run_cli("user", "add", "cli-ann", "--role", "reviewer", "--password-stdin", input="s3cret-pass\n")
    assert r.exit_code == 0, r.output
    r = run_cli("user", "add", "cli-two", input="pw12345\npw12345\n")
    assert r.exit_code == 0, r.output
    r = run_cli("user", "add", "cli-ann", "--password-stdin", input="x1234567\n")
    assert r.exit_code == 1 and "already exists" in r.output
    assert run_cli("user", "set-role", "cli-two", "admin").exit_code == 0
    assert run_cli("user", "disable", "cli-ann").exit_code == 0
    out = run_cli("user", "list").output
    assert "cli-ann\treviewer\thuman\tdisabled" in out and "cli-two\tadmin\thuman\tactive" in out
    r = run_cli("user", "set-role", "ghost", "admin")
    assert r.exit_code == 1 and "no user named 'ghost'" in r.output
    assert run_cli("user", "passwd", "cli-two", "--password-stdin", input="another-pass\n").exit_code == 0
