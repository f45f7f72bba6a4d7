"""``classifi submit PATH --label L``: propose a photo and its label for review."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from classifi.cli import app_of
from classifi.cli._output import echo_json


@click.command(
    "submit",
    help="""Submit the photo at PATH with a proposed label; an admin reviews it later.

    The photo is checked, classified by the champion (when there is one) and stored as
    pending under raw/new_data/pending_validation/. An exact duplicate of a stored photo is
    not stored again; a near-duplicate is stored and flagged for the reviewer. Both name
    the photo they duplicate.
    """,
)
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--label", "-l", required=True, help="The label you propose for the photo.")
@click.option("--by", "submitted_by", help="Who submits it (default: your OS user).")
@click.option("--json", "as_json", is_flag=True, help="Print id, status and duplicate_of as JSON.")
@click.pass_context
def command(
    ctx: click.Context, path: Path, label: str, submitted_by: str | None, as_json: bool
) -> None:
    app = app_of(ctx)
    result = app.submit(
        path.read_bytes(), label, source=str(path.resolve()), submitted_by=submitted_by or app.actor
    )
    if as_json:
        echo_json(result.to_dict())
        return
    console = Console()
    duplicate = result.duplicate
    if not result.stored and duplicate is not None:
        console.print(
            f"Not stored: the same photo is already photo {duplicate.photo_id} ({duplicate.status})."
        )
        return
    console.print(f"Submitted as photo {result.photo_id} (pending review).")
    if result.prediction is not None:
        console.print(
            f"The model (version {result.model_version}) says {result.prediction} "
            f"({result.confidence:.0%})."
        )
    if duplicate is not None:
        console.print(
            f"Flagged: it looks like photo {duplicate.photo_id} ({duplicate.status}), "
            f"cosine distance {duplicate.distance:.3f}."
        )
