"""``classifi keys create|list|revoke|pair``: the device keys of the edge server.

Off loopback, a server's prediction, submission and usage routes need a key. Each device
gets its own, so that its submissions carry its name, its rate limits are its own, and one
lost phone is revoked alone. A key is shown once and kept only as its hash.
"""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from classifi.cli import app_of
from classifi.cli._output import echo_json


@click.group("keys", help="Manage the device keys that phones and desktops send to the server.")
def command() -> None:
    pass


@command.command("create", help="Make a key for device NAME and print it, once.")
@click.argument("name")
@click.pass_context
def create_command(ctx: click.Context, name: str) -> None:
    key = app_of(ctx).create_device_key(name)
    click.secho(f"Device key for {name} (shown only this once):", bold=True, err=True)
    click.echo(key)
    click.echo("The device sends it as 'X-API-Key: <key>'.", err=True)


@command.command("list", help="The devices that have a key, oldest first (never the keys).")
@click.option("--json", "as_json", is_flag=True, help="A JSON list of {name, created_at}.")
@click.pass_context
def list_command(ctx: click.Context, as_json: bool) -> None:
    keys = app_of(ctx).device_keys()
    if as_json:
        echo_json([{"name": key.name, "created_at": key.created_at.isoformat()} for key in keys])
        return
    if not keys:
        Console().print("No device has a key: `classifi keys create NAME` makes one.")
        return
    table = Table(title="Device keys")
    table.add_column("Device")
    table.add_column("Created")
    for key in keys:
        table.add_row(key.name, f"{key.created_at.astimezone():%Y-%m-%d %H:%M}")
    Console().print(table)


@command.command("revoke", help="Revoke the key of device NAME: its requests are refused.")
@click.argument("name")
@click.pass_context
def revoke_command(ctx: click.Context, name: str) -> None:
    app_of(ctx).revoke_device_key(name)
    click.echo(f"The key of {name} is revoked.")


@command.command(
    "pair",
    help="Print a short one-time code that a device trades for a key of its own (valid 10 "
    "minutes). Type it into the desktop's settings in place of a key, or send it to "
    'POST /pair {"code": ..., "device": ...}. The key is named NAME, or, without NAME, '
    "after the device.",
)
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print {code, device, expires_at}.")
@click.pass_context
def pair_command(ctx: click.Context, name: str | None, as_json: bool) -> None:
    pairing = app_of(ctx).create_pairing_code(name)
    if as_json:
        echo_json(
            {
                "code": pairing.code,
                "device": pairing.device,
                "expires_at": pairing.expires_at.isoformat(),
            }
        )
        return
    who = f"device {name}" if name else "a device (it names its key)"
    click.secho(f"Pairing code for {who}, shown only this once:", bold=True, err=True)
    click.echo(pairing.code)
    click.echo(f"It works once, until {pairing.expires_at.astimezone():%H:%M}.", err=True)
