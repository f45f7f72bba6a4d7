"""``classifi restore SRC``: put a backup back as this home."""

from __future__ import annotations

from pathlib import Path

import click

from classifi.cli import app_of


@click.command(
    "restore",
    help="""Restore the backup in SRC as this home. Stop the desktop, servers and workers on
    this home first. An empty (or new) home is filled; a home holding data is refused unless
    --replace, which keeps it beside the restored one (<home>.replaced-<time>), never
    deleting it.
    """,
)
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--replace", is_flag=True, help="Keep the current home aside and restore.")
@click.pass_context
def command(ctx: click.Context, source: Path, replace: bool) -> None:
    app = app_of(ctx)
    manifest = app.restore(source, replace=replace)
    click.echo(
        f"Restored the backup of {manifest['created_at']} ({manifest['photos']} photos, "
        f"{manifest['models']} model version(s)) into {app.settings.home}."
    )
