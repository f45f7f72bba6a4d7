"""Helpers shared by the learning-loop commands (submit, review, retrain-check, models,
doctor): the services, the acting OS user, JSON output and a progress bar."""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TimeElapsedColumn

from core.config import Settings
from core.model.training import Progress as TrainingProgress
from core.registry import Registry
from core.store import ObjectStore, open_store

STAGES = {"embed": "Embedding new photos", "train": "Training the head"}


def services(settings: Settings) -> tuple[Registry, ObjectStore]:
    return Registry(settings.registry_url), open_store(settings)


def os_actor() -> str:
    """Admin commands record the OS user who ran them."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (e.g. a bare container)
        return "unknown-user"


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


@contextmanager
def training_progress() -> Iterator[TrainingProgress | None]:
    """Rich bars for the embed and train stages on a terminal; nothing on a pipe."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bars:
        tasks: dict[str, TaskID] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bars.add_task(STAGES.get(stage, stage), total=total)
            bars.update(tasks[stage], completed=done, total=total)

        yield update
