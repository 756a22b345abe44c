"""CLI: `preflab server`, `preflab user ...`, `preflab login` / `logout` (the token the CLI sends to a server).

    preflab server --port 8000
    preflab user add alice --role annotator            # asks for the password twice
    echo "$PW" | preflab user add bob --role admin --password-stdin
    preflab login admin                                # stores a token in $PREFLAB_HOME/token

`user` commands need the database file, so run them while no server holds it (or use the admin page /
POST /api/users while it runs).
"""

from __future__ import annotations

import sys

import click

from serving.cli.root import open_store

ROLES = ("annotator", "reviewer", "admin")


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.ClickException("no password on stdin")
        return password
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def register(cli: click.Group) -> None:
    @cli.command("server")
    @click.option(
        "--host",
        default="127.0.0.1",
        show_default=True,
        help="Interface to listen on; anything beyond localhost needs real passwords.",
    )
    @click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
    @click.option(
        "--token-ttl",
        "token_ttl_s",
        default=12 * 3600,
        show_default=True,
        type=click.IntRange(1),
        help="Seconds a sign-in lasts.",
    )
    @click.option(
        "--lease",
        "lease_s",
        default=600,
        show_default=True,
        type=click.IntRange(1),
        help="Seconds an annotator holds a prompt before it returns to the queue.",
    )
    @click.pass_context
    def server(ctx: click.Context, host: str, port: int, token_ttl_s: int, lease_s: int) -> None:
        """Run the PrefLab server (data API under /api, docs at /docs). It owns the database file."""
        from serving.api.app import ServerConfig, run_server

        db_path = ctx.find_root().obj["db_path"]
        click.echo(f"PrefLab server on http://{host}:{port} (database {db_path}); Ctrl-C stops it", err=True)
        run_server(db_path, host=host, port=port, config=ServerConfig(token_ttl_s=token_ttl_s, lease_s=lease_s))

    @cli.group("user")
    def user_group() -> None:
        """Users who sign in to the server: add, list, set-role, disable, passwd."""

    @user_group.command("add")
    @click.argument("name")
    @click.option("--role", type=click.Choice(ROLES), default="annotator", show_default=True)
    @click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
    @click.pass_context
    def user_add(ctx: click.Context, name: str, role: str, password_stdin: bool) -> None:
        """Add a user; the password comes from a prompt (asked twice) or stdin."""
        from db import users
        from serving.api.security import hash_password

        store = open_store(ctx)
        pw_hash = hash_password(_read_password(password_stdin))
        users.add_user(store, name, role=role, password_hash=pw_hash, created_by="cli")
        click.echo(f"added {name} ({role})")

    @user_group.command("list")
    @click.pass_context
    def user_list(ctx: click.Context) -> None:
        """Users with role and state (imported annotators have no password and cannot sign in)."""
        from db import users

        for u in users.list_users(open_store(ctx)):
            state = "disabled" if u["disabled"] else "active"
            click.echo(f"{u['name']}\t{u['role']}\t{u['kind']}\t{state}")

    @user_group.command("set-role")
    @click.argument("name")
    @click.argument("role", type=click.Choice(ROLES))
    @click.pass_context
    def user_set_role(ctx: click.Context, name: str, role: str) -> None:
        """Change a user's role."""
        from db import users

        users.update_user(open_store(ctx), name, role=role)
        click.echo(f"{name} is now {role}")

    @user_group.command("disable")
    @click.argument("name")
    @click.option("--enable", is_flag=True, help="Enable the user again instead.")
    @click.pass_context
    def user_disable(ctx: click.Context, name: str, enable: bool) -> None:
        """Disable a user: they cannot sign in and their tokens stop working at once."""
        from db import users

        users.update_user(open_store(ctx), name, disabled=not enable)
        click.echo(f"{name} {'enabled' if enable else 'disabled'}")

    @user_group.command("passwd")
    @click.argument("name")
    @click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
    @click.pass_context
    def user_passwd(ctx: click.Context, name: str, password_stdin: bool) -> None:
        """Set a new password (ends the user's current sessions)."""
        from db import users
        from serving.api.security import hash_password

        store = open_store(ctx)
        users.require_user(store, name)
        users.update_user(store, name, password_hash=hash_password(_read_password(password_stdin)))
        click.echo(f"password of {name} changed")

    @cli.command("login")
    @click.argument("name")
    @click.option("--url", envvar="PREFLAB_URL", default=None, help="Server URL (default: the running server).")
    @click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
    def login(name: str, url: str | None, password_stdin: bool) -> None:
        """Sign in to the running server; the CLI then sends its import/export/sample/stats there."""
        from serving.cli import remote

        if password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = click.prompt("Password", hide_input=True)
        base = url or remote.server_url()
        if not base:
            raise click.ClickException("no server is running (start one with `preflab server` or set PREFLAB_URL)")
        path, expires_at = remote.login(base, name, password)
        click.echo(f"signed in to {base} as {name} until {expires_at} (token in {path})")

    @cli.command("logout")
    def logout() -> None:
        """Forget the stored token (and end its session on the server if one runs)."""
        from serving.cli import remote

        remote.logout()
        click.echo("signed out")
