"""What the commands share for output: JSON on stdout and progress bars on a terminal."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TimeElapsedColumn

if TYPE_CHECKING:
    from core.model.training import Progress as TrainingProgress

#: update(description, done, total): one bar per description, created on first update.
UpdateBar = Callable[[str, int, int | None], None]

STAGES = {"embed": "Embedding new photos", "train": "Training the head"}


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


@contextmanager
def progress_bars() -> Iterator[UpdateBar]:
    """Rich bars on stderr when it is a terminal (output lines print above them); on a pipe
    or a file, where a bar would only be noise, updates do nothing."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda _description, _done, _total: None
        return
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bars:
        tasks: dict[str, TaskID] = {}

        def update(description: str, done: int, total: int | None) -> None:
            if description not in tasks:
                tasks[description] = bars.add_task(description, total=total)
            bars.update(tasks[description], completed=done, total=total)

        yield update


@contextmanager
def training_progress() -> Iterator[TrainingProgress]:
    """Bars for a training's stages (embedding, then training the head)."""
    with progress_bars() as update:
        yield lambda stage, done, total: update(STAGES.get(stage, stage), done, total)
