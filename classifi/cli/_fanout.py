"""What ``--queue`` shares: queue a job's parts for the workers, then wait and report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from classifi.cli._output import progress_bars
from core.config import Settings
from core.errors import TaskFailed
from core.status import hide_password
from worker.fanout import FanOut

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def queue_option(what: str) -> Decorator:
    return click.option(
        "--queue",
        "queued",
        is_flag=True,
        help=f"Split {what} into parts queued for every worker (settings.queue_url) and wait "
        "for them: N workers on one Redis share the work. Ctrl-C stops the wait, not the work.",
    )


def chunk_option(default: int) -> Decorator:
    return click.option(
        "--chunk-size",
        type=click.IntRange(min=1),
        default=default,
        show_default=True,
        help="Photos per queued part (with --queue).",
    )


def wait_for_parts(settings: Settings, fanout: FanOut, description: str) -> None:
    """Wait for every part with a progress bar; TaskFailed naming the first failure, once
    the others are done (the caller reports those first when it catches nothing)."""
    total = len(fanout.task_ids)
    click.echo(
        f"Queued {total} part(s) on {hide_password(settings.queue_url)}: waiting for the "
        "workers ('classifi worker' must run on that queue).",
        err=True,
    )
    with progress_bars() as update:
        update(description, 0, total)
        fanout.wait(settings, lambda done, total: update(description, done, total))


def raise_failures(fanout: FanOut) -> None:
    if fanout.failures:
        raise TaskFailed(
            f"{len(fanout.failures)} of {len(fanout.task_ids)} part(s) failed; the first: "
            f"{fanout.failures[0]} Run the command again to redo what is missing."
        )
