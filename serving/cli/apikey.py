"""CLI: `preflab apikey ...`: keys for the /v1 gateway (create, list, revoke).

    preflab apikey create ci-bot            # prints the key once; /v1 then requires keys

These commands open the database file: run them while no server holds it.
"""

from __future__ import annotations

import click

from serving.cli.root import open_store


def register(cli: click.Group) -> None:
    @cli.group("apikey")
    def apikey_group() -> None:
        """Keys for the /v1 gateway (once one exists, every /v1 call needs one)."""

    @apikey_group.command("create")
    @click.argument("name")
    @click.pass_context
    def apikey_create(ctx, name) -> None:
        """Create a key and print it (shown only now; only its hash is stored)."""
        from db import apikeys

        click.echo(apikeys.create_key(open_store(ctx), name, created_by="cli"))

    @apikey_group.command("list")
    @click.pass_context
    def apikey_list(ctx) -> None:
        from db import apikeys

        for k in apikeys.list_keys(open_store(ctx)):
            state = "revoked" if k["revoked"] else "active"
            click.echo(f"{k['name']}\t{k['prefix']}…\t{state}\tlast used {k['last_used_at'] or 'never'}")

    @apikey_group.command("revoke")
    @click.argument("name")
    @click.pass_context
    def apikey_revoke(ctx, name) -> None:
        from db import apikeys

        apikeys.revoke_key(open_store(ctx), name)
        click.echo(f"revoked {name}")
