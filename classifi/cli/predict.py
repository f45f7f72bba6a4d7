"""``classifi predict PATH...``: classify photos and folders with the champion model."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from itertools import islice
from pathlib import Path

import click

from classifi.cli import app_of
from classifi.cli._output import progress_bars
from core.errors import ClassifiError, InvalidImage
from core.imaging import find_photos, read_photo_file
from core.wire import Prediction


def _batches(paths: Sequence[Path], size: int) -> Iterator[list[Path]]:
    iterator = iter(paths)
    while batch := list(islice(iterator, size)):
        yield batch


def _line(
    path: Path, outcome: Prediction | ClassifiError, as_json: bool, labels: Sequence[str]
) -> str:
    if isinstance(outcome, ClassifiError):
        if as_json:
            return json.dumps({"path": str(path), "error": str(outcome)})
        return f"{path}\tERROR\t{outcome}"
    if as_json:
        return json.dumps({"path": str(path), **outcome.to_dict()})
    probabilities = " ".join(f"{k}={v:.3f}" for k, v in outcome.probabilities.items())
    line = (
        f"{path}\t{outcome.label}\t{outcome.confidence:.3f}\t{probabilities}\t"
        f"v{outcome.model_version} ({outcome.backbone})"
    )
    return line + "".join(f"\t{flag}" for flag in flags(outcome, labels))


def flags(prediction: Prediction, labels: Sequence[str]) -> list[str]:
    """What a person should know beside the label: unsure, or not a photo of any label."""
    notes = []
    if prediction.out_of_distribution:
        notes.append(f"not a {' or '.join(labels)} photo")
    if prediction.unsure:
        notes.append("unsure")
    return notes


@click.command(
    "predict",
    help="""Classify photos with the champion model.

    PATH may be a photo or a folder (searched recursively for image files). One line per
    photo: label, confidence, the probability of each label and the model version, then
    "not a <labels> photo" when the photo is unlike every training photo and "unsure" when
    the confidence is below the model's calibrated threshold. With --json, one JSON object
    per line: {"path", "prediction", "confidence", "probabilities", "model_version",
    "backbone", "unsure", "out_of_distribution", "heatmap": null}, or {"path", "error"}
    for a photo that cannot be read. The exit code is 1 if any photo failed.
    """,
)
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    help="Photos per backbone pass (default: setting embed_batch_size).",
)
@click.pass_context
def command(
    ctx: click.Context, paths: tuple[Path, ...], as_json: bool, batch_size: int | None
) -> None:
    app = app_of(ctx)
    labels = app.load_model().labels  # no model: fail before reading any photo
    files = find_photos(paths)
    if not files:
        raise click.ClickException(f"No image files in {', '.join(map(str, paths))}.")
    failed = done = 0
    with progress_bars() as update:
        update("Classifying", done, len(files))
        for batch in _batches(files, batch_size or app.settings.embed_batch_size):
            outcomes: dict[Path, Prediction | ClassifiError] = {}
            readable: dict[Path, bytes] = {}
            for path in batch:
                try:
                    readable[path] = read_photo_file(path)
                except InvalidImage as exc:
                    outcomes[path] = exc
            outcomes.update(zip(readable, app.classify(list(readable.values())), strict=True))
            for path in batch:  # in the order given
                if isinstance(outcomes[path], ClassifiError):
                    failed += 1
                click.echo(_line(path, outcomes[path], as_json, labels))
            done += len(batch)
            update("Classifying", done, len(files))
    if failed:
        click.echo(f"{failed} of {len(files)} photos could not be classified.", err=True)
        ctx.exit(1)
