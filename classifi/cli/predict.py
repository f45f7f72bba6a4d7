"""``classifi predict PATH...``: classify photos and folders with the champion model."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from classifi.cli import settings_of
from core.errors import InvalidImage
from core.imaging import check_photo
from core.ingest import PHOTO_SUFFIXES
from core.model.prediction import Prediction
from core.model.predictor import Predictor
from core.registry import Registry
from core.store import open_store


def photo_paths(paths: Sequence[Path]) -> Iterator[Path]:
    """Files as given; folders walked recursively for image files, in sorted order."""
    for path in paths:
        if path.is_dir():
            yield from sorted(
                found
                for found in path.rglob("*")
                if found.is_file() and found.suffix.lower() in PHOTO_SUFFIXES
            )
        else:
            yield path


@contextmanager
def _progress_bar(console: Console, total: int) -> Iterator[Callable[[int], None]]:
    """A transient rich bar on a terminal (lines print above it); a no-op otherwise."""
    if not console.is_terminal:
        yield lambda _count: None
        return
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("Classifying", total=total)
        yield lambda count: bar.update(task, advance=count)


def _batches(paths: Iterator[Path], size: int) -> Iterator[list[Path]]:
    batch: list[Path] = []
    for path in paths:
        batch.append(path)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _prediction_line(path: Path, prediction: Prediction, as_json: bool) -> str:
    if as_json:
        return json.dumps({"path": str(path), **prediction.to_dict()})
    probabilities = " ".join(f"{k}={v:.3f}" for k, v in prediction.probabilities.items())
    return (
        f"{path}\t{prediction.label}\t{prediction.confidence:.3f}\t{probabilities}\t"
        f"v{prediction.model_version} ({prediction.backbone})"
    )


def _error_line(path: Path, error: str, as_json: bool) -> str:
    return json.dumps({"path": str(path), "error": error}) if as_json else f"{path}\tERROR\t{error}"


@click.command(
    "predict",
    help="""Classify photos with the champion model.

    PATH may be a photo or a folder (searched recursively for image files). One line per
    photo: label, confidence, the probability of each label and the model version. With
    --json, one JSON object per line: {"path", "prediction", "confidence",
    "probabilities", "model_version", "backbone"}, or {"path", "error"} for a photo that
    cannot be read. The exit code is 1 if any photo failed.
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
    settings = settings_of(ctx)
    batch_size = batch_size or settings.embed_batch_size
    predictor = Predictor(settings, Registry(settings.registry_url), open_store(settings))
    predictor.ensure_loaded()  # no model: fail before reading any photo

    files = list(photo_paths(paths))
    if not files:
        raise click.ClickException(f"No image files in {', '.join(map(str, paths))}.")
    failed = 0
    with _progress_bar(Console(stderr=True), len(files)) as advance:
        for batch in _batches(iter(files), batch_size):
            lines: dict[Path, str] = {}
            readable, images = [], []
            for path in batch:
                try:
                    images.append(check_photo(path.read_bytes(), settings).image)
                    readable.append(path)
                except (OSError, InvalidImage) as exc:
                    failed += 1
                    lines[path] = _error_line(path, str(exc), as_json)
            if images:
                for path, prediction in zip(readable, predictor.predict(images), strict=True):
                    lines[path] = _prediction_line(path, prediction, as_json)
            for path in batch:  # in the order given
                click.echo(lines[path])
            advance(len(batch))
    if failed:
        click.echo(f"{failed} of {len(files)} photos could not be classified.", err=True)
        ctx.exit(1)
