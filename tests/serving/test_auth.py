"""Sign-in, tokens, roles: wrong passwords, expired tokens, role escalation, disabled users, public bind."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from db import users
from db.errors import PrefLabError
from serving.api.app import ServerConfig, check_public_bind, create_app
from tests.support.data import PASSWORD, add_user, signed_in


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
    r = client.post("/api/users", headers=adm, json={"name": "zoë.張", "role": "annotator", "password": "pässwörd"})
    assert r.status_code == 201 and r.json()["name"] == "zoë.張"
    assert client.post("/api/users", headers=adm, json={"name": "zoë.張", "password": "pässwörd"}).status_code == 409
    zoe = signed_in(client, "zoë.张".replace("张", "張"), "pässwörd")
    assert client.get("/api/me", headers=zoe).status_code == 200
    assert client.patch("/api/users/zoë.張", headers=adm, json={"role": "reviewer"}).json()["role"] == "reviewer"
    assert client.get("/api/me", headers=zoe).json()["role"] == "reviewer"  # not the remembered sign-in's role
    assert client.patch("/api/users/zoë.張", headers=adm, json={"disabled": True}).json()["disabled"] is True
    assert client.get("/api/me", headers=zoe).status_code == 401  # their token stopped working at once
    assert client.post("/api/auth/login", json={"name": "zoë.張", "password": "pässwörd"}).status_code == 401
    client.patch("/api/users/zoë.張", headers=adm, json={"disabled": False, "password": "new secret"})
    assert client.post("/api/auth/login", json={"name": "zoë.張", "password": "pässwörd"}).status_code == 401
    signed_in(client, "zoë.張", "new secret")
    assert client.patch("/api/users/nobody", headers=adm, json={"role": "admin"}).status_code == 404
    bad = client.patch("/api/users/ann", headers=adm, json={"role": "root"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "role"
    assert client.patch("/api/users/adm", headers=adm, json={"disabled": True}).status_code == 400


def test_public_bind_refused_with_demo_password(store):
    add_user(store, "admin", "admin", password="admin")
    check_public_bind(store, "127.0.0.1")  # localhost is fine
    with pytest.raises(PrefLabError, match="admin.*default or demo password"):
        check_public_bind(store, "0.0.0.0")
    from serving.api.security import hash_password

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


# ---- sign-in throttling ------------------------------------------------------------------------------------


@pytest.fixture
def verifies(monkeypatch):
    """Counts password checks (argon2 verifies), the work a locked-out attempt must never cause."""
    from serving.api import security as auth

    calls = []
    real = auth._safe_verify

    def counted(password_hash, password):
        calls.append(password)
        return real(password_hash, password)

    monkeypatch.setattr(auth, "_safe_verify", counted)
    return calls


def test_a_locked_name_gets_429_before_any_password_check(app_store, verifies):
    app = create_app(app_store, ServerConfig(login_max_failures=3, login_lockout_s=60))
    with TestClient(app) as c:
        for _ in range(3):
            assert c.post("/api/auth/login", json={"name": "ann", "password": "wrong one"}).status_code == 401
        assert len(verifies) == 3
        for password in ("wrong one", PASSWORD):  # while locked, even the right password waits
            r = c.post("/api/auth/login", json={"name": "ANN", "password": password})  # names ignore case here too
            assert r.status_code == 429 and set(r.json()["error"]) == {"message", "field"}
            assert 0 < int(r.headers["Retry-After"]) <= 60
        assert len(verifies) == 3  # no argon2 work for a locked attempt
        signed_in(c, "rev")  # another name from the same address is not locked


def test_unknown_users_cost_one_verify_and_count_as_failures(app_store, verifies):
    with TestClient(create_app(app_store, ServerConfig(login_max_failures=2))) as c:
        assert c.post("/api/auth/login", json={"name": "ghost", "password": "x1234"}).status_code == 401
        assert len(verifies) == 1  # the dummy hash: as costly as a real user's wrong password
        assert c.post("/api/auth/login", json={"name": "ghost", "password": "x1234"}).status_code == 401
        assert c.post("/api/auth/login", json={"name": "ghost", "password": "x1234"}).status_code == 429
        assert len(verifies) == 2


def test_an_address_is_locked_across_names_and_others_are_not(app_store, verifies):
    app = create_app(app_store, ServerConfig(login_max_failures=2))  # an address may fail 5 x 2 times
    with TestClient(app, client=("203.0.113.9", 4000)) as attacker:
        for i in range(10):
            r = attacker.post("/api/auth/login", json={"name": f"guess{i}", "password": "x1234"})
            assert r.status_code == 401, (i, r.text)
        r = attacker.post("/api/auth/login", json={"name": "ann", "password": PASSWORD})
        assert r.status_code == 429 and "Retry-After" in r.headers
        assert len(verifies) == 10
        office = TestClient(app, client=("198.51.100.7", 4000))
        signed_in(office, "ann")  # ann herself, from her own address, is not locked out


def test_a_success_clears_the_names_failures(app_store):
    with TestClient(create_app(app_store, ServerConfig(login_max_failures=3))) as c:
        for _ in range(2):
            for _ in range(2):
                assert c.post("/api/auth/login", json={"name": "ann", "password": "nope"}).status_code == 401
            signed_in(c, "ann")


def test_a_lockout_ends_and_old_failures_leave_the_window(monkeypatch):
    from serving.api import security as auth

    now = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: now[0])
    t = auth.LoginThrottle(max_failures=2, window_s=60, lockout_s=30)
    t.failed("ann", "10.0.0.1")
    now[0] += 61  # out of the window: forgotten
    t.failed("ann", "10.0.0.1")
    assert t.retry_after("ann", "10.0.0.1") == 0
    t.failed("Ann", "10.0.0.2")
    assert t.retry_after("ann", "10.0.0.3") == 30
    now[0] += 29.5
    assert t.retry_after("ann", None) == pytest.approx(0.5)
    now[0] += 1
    assert t.retry_after("ann", None) == 0


def test_a_flood_of_sign_ins_uses_two_threads_and_other_requests_go_on(app_store, monkeypatch):
    """At most login_concurrency password checks run at once; the rest wait on the event loop, not in worker
    threads, so a signed-in user's request is answered while checks are stuck."""
    from serving.api import security as auth

    running, most, gate = [0], [0], threading.Event()
    lock = threading.Lock()
    real_login = auth.login

    def slow_login(*args, **kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            assert gate.wait(30)
            return real_login(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    app = create_app(app_store, ServerConfig(login_concurrency=2))

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            token = (await c.post("/api/auth/login", json={"name": "rev", "password": PASSWORD})).json()["token"]
            monkeypatch.setattr(auth, "login", slow_login)
            flood = [
                asyncio.create_task(c.post("/api/auth/login", json={"name": "ann", "password": f"guess {i}"}))
                for i in range(8)
            ]
            while running[0] < 2:
                await asyncio.sleep(0.01)
            me = await c.get("/api/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200 and me.json()["name"] == "rev"
            assert running[0] == 2  # the other six wait for a slot, holding no thread
            gate.set()
            return [r.status_code for r in await asyncio.gather(*flood)]

    codes = asyncio.run(scenario())
    assert most[0] == 2
    assert sorted(codes) == [401] * 8


# ---- user names ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../admin", "a/b", "a b", ".hidden", "-x", "_x", "a..b", "tab\there", "x" * 65, ""])
def test_user_names_outside_the_rule_are_refused(client, name):
    adm = signed_in(client, "adm")
    r = client.post("/api/users", headers=adm, json={"name": name, "password": "a good passphrase"})
    assert r.status_code in (400, 422) and r.json()["error"]["field"] == "name", r.text
    with pytest.raises(PrefLabError):
        users.add_user(client.app.state.store, name, role="annotator", password_hash=None, created_by="t")


def test_user_names_are_unique_ignoring_case(client):
    adm = signed_in(client, "adm")
    for name in ("ADM", "Ann", "aNN"):
        r = client.post("/api/users", headers=adm, json={"name": name, "password": "a good passphrase"})
        assert r.status_code == 409 and "ignore case" in r.json()["error"]["message"], r.text
    r = client.post("/api/users", headers=adm, json={"name": "Élodie.M-2_b", "password": "a good passphrase"})
    assert r.status_code == 201, r.text


def test_users_named_before_the_rule_still_sign_in_and_are_managed(client, app_store):
    from serving.api.security import hash_password

    app_store.con.execute(
        "INSERT INTO users (name, role, password_hash, kind, created_by) VALUES (?, 'annotator', ?, 'human', 't')",
        ["../old user", hash_password(PASSWORD)],
    )
    signed_in(client, "../old user")
    adm = signed_in(client, "adm")
    r = client.patch("/api/users/..%2Fold%20user", headers=adm, json={"role": "reviewer"})
    assert r.status_code == 200 and r.json()["name"] == "../old user" and r.json()["role"] == "reviewer"
    # the Admin page's client quotes the name, so it manages such a user too
    from annotate.client import Client

    ui = Client("http://testserver", token=adm["Authorization"].split()[1], http=client)
    assert ui.update_user("../old user", role="annotator")["role"] == "annotator"


def test_user_cli_refuses_a_bad_name_in_one_line(run_cli, store):
    store.close()
    r = run_cli("user", "add", "../admin", "--password-stdin", input="a good passphrase\n")
    assert r.exit_code == 1 and "invalid user name" in r.output and "Traceback" not in r.output


# ---- a server reachable from other machines --------------------------------------------------------------


def test_public_server_refuses_weak_passwords_set_later(app_store):
    with TestClient(create_app(app_store, ServerConfig(public=True))) as c:
        adm = signed_in(c, "adm")
        for name, password in (("newbie", "changeme"), ("newbie", "Admin"), ("newbie", "newbie")):
            r = c.post("/api/users", headers=adm, json={"name": name, "password": password})
            assert r.status_code == 400 and r.json()["error"]["field"] == "password", r.text
        assert c.patch("/api/users/ann", headers=adm, json={"password": "annotator"}).status_code == 400
        assert c.patch("/api/users/ann", headers=adm, json={"password": "a real passphrase"}).status_code == 200
        r = c.post("/api/users", headers=adm, json={"name": "newbie", "password": "a long real passphrase"})
        assert r.status_code == 201
    with TestClient(create_app(app_store)) as c:  # on localhost a demo password is fine
        r = c.post("/api/users", headers=signed_in(c, "adm"), json={"name": "demo2", "password": "changeme"})
        assert r.status_code == 201


def test_public_gateway_needs_an_api_key_even_before_one_exists(app_store, monkeypatch):
    from db import apikeys
    from serving.engines import registry

    monkeypatch.setattr(registry, "list_engines", lambda: [])
    with TestClient(create_app(app_store)) as c:
        assert c.get("/v1/models").status_code == 200  # localhost, no key yet: open as before
    with TestClient(create_app(app_store, ServerConfig(public=True))) as c:
        r = c.get("/v1/models")
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        key = apikeys.create_key(app_store, "ci", created_by="t")
        assert c.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200


@pytest.mark.parametrize(
    "host,public",
    [("127.0.0.1", False), ("localhost", False), ("::1", False), ("127.0.0.2", False), ("0.0.0.0", True)]
    + [("::", True), ("192.168.1.20", True), ("myhost.example", True)],
)
def test_which_hosts_are_public(host, public):
    from serving.api.app import is_public

    assert is_public(host) is public


def test_the_server_purges_expired_sign_ins_when_it_starts(store):
    from datetime import datetime, timedelta

    uid = add_user(store, "eve")
    users.add_token(store, "old", uid, datetime.now() - timedelta(hours=1))
    users.add_token(store, "live", uid, datetime.now() + timedelta(hours=1))
    create_app(store)
    assert [r[0] for r in store.con.execute("SELECT token_hash FROM api_tokens").fetchall()] == ["live"]
