"""``classifi explain PHOTO --out FILE.png``: the photo with a heat overlay of where the model
found its label (a class activation map, :mod:`core.model.explain`)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import click

from classifi.cli import app_of
from classifi.cli.predict import flags
from core.imaging import read_photo_file


@click.command(
    "explain",
    help="""Write PHOTO with a heat overlay: where the champion model found its label.

    The overlay covers the part of the photo the model sees; the warmer, the more that part
    speaks for the predicted label. Prints the prediction as `classifi predict` does (with
    --json, its JSON object, without the picture).
    """,
)
@click.argument("photo", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="The PNG file to write.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the prediction as JSON.")
@click.pass_context
def command(ctx: click.Context, photo: Path, out: Path, as_json: bool) -> None:
    app = app_of(ctx)
    labels = app.load_model().labels
    prediction = app.explain(read_photo_file(photo))
    assert prediction.heatmap is not None  # explain always draws one
    out.write_bytes(base64.b64decode(prediction.heatmap))
    if as_json:
        answer = {"path": str(photo), **prediction.to_dict(), "heatmap": str(out)}
        click.echo(json.dumps(answer))
        return
    notes = "".join(f", {flag}" for flag in flags(prediction, labels))
    click.echo(f"{photo}: {prediction.label} at {prediction.confidence:.0%}{notes}; wrote {out}")
