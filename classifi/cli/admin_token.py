"""``classifi admin-token``: manage the edge server's admin token."""

from __future__ import annotations

import click

from classifi.cli import settings_of


@click.group(help="Manage the edge server's admin token (stored only as a salted hash).")
def command() -> None:
    pass


@command.command(help="Make a new admin token, print it once; the old one stops working.")
@click.pass_context
def reset(ctx: click.Context) -> None:
    from core.auth import reset_admin_token
    from core.registry import Registry

    registry = Registry(settings_of(ctx).registry_url)
    try:
        token = reset_admin_token(registry)
    finally:
        registry.dispose()
    click.secho("New admin token (shown only this once):", bold=True, err=True)
    click.echo(token)
