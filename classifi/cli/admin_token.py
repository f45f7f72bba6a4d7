"""``classifi admin-token``: manage the edge server's admin token."""

from __future__ import annotations

import click

from classifi.cli import app_of


@click.group(help="Manage the edge server's admin token (stored only as a salted hash).")
def command() -> None:
    pass


@command.command(help="Make a new admin token, print it once; the old one stops working.")
@click.pass_context
def reset(ctx: click.Context) -> None:
    token = app_of(ctx).reset_admin_token()
    click.secho("New admin token (shown only this once):", bold=True, err=True)
    click.echo(token)
