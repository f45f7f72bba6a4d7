"""``classifi backup DEST`` and ``classifi restore SRC``: a home's data, kept safe."""

from __future__ import annotations

from pathlib import Path

import click

from classifi.cli import app_of
from classifi.cli._output import echo_json


@click.command(
    "backup",
    help="""Back up this home to DEST, a new folder: the registry, the bucket, MLflow's
    local store and the exported runtimes (embedded stores only; back up a PostgreSQL or S3
    deployment with its own tools).

    Safe while the app, a server or a worker runs: the databases are copied with SQLite's
    online backup, then the copy is checked and repaired against its own registry. The
    folder appears only once the backup is complete.
    """,
)
@click.argument("destination", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def command(ctx: click.Context, destination: Path, as_json: bool) -> None:
    report = app_of(ctx).backup(
        destination, progress=None if as_json else lambda step: click.echo(step, err=True)
    )
    if as_json:
        echo_json(report.to_dict())
        return
    click.echo(
        f"Backed up {report.photos} photos, {report.models} model version(s) and "
        f"{report.objects} objects to {report.path}."
    )
    for repaired in report.repaired:
        click.echo(f"  repaired in the copy: {repaired}")
