"""``classifi desktop``: open the desktop app."""

from __future__ import annotations

import click

from classifi.cli import settings_of


@click.command()
@click.option(
    "--remote",
    metavar="URL",
    help="Connect to this edge server (saved as the remote mode in the app's settings).",
)
@click.option("--local", "force_local", is_flag=True, help="Work on this computer's data.")
@click.pass_context
def command(ctx: click.Context, remote: str | None, force_local: bool) -> None:
    """Open the desktop app: drop photos to classify them, submit corrections, review them
    (admin) and manage models. It works offline on the local data, or connected to an
    edge server (see File > Settings)."""
    if remote and force_local:
        raise click.UsageError("Choose --remote URL or --local, not both.")
    from desktop.app import run  # Qt loads only when the app is opened

    raise SystemExit(run(settings_of(ctx), remote_url=remote, force_local=force_local))
