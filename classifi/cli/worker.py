"""``classifi worker``: run the Huey consumer (scheduled ingest and retrain checks)."""

from __future__ import annotations

import click

from classifi.cli import settings_of


@click.command(
    "worker",
    help="""Run the worker until stopped: the retrain check on retrain_schedule (default
    Saturday 00:00), ingest of ingest_sources on ingest_schedule (off by default), and the
    retrains the edge server and the desktop enqueue.

    The queue is settings.queue_url: a SQLite file by default, Redis for several workers.
    Ctrl-C (SIGINT) lets running tasks finish; SIGTERM stops at once. Either way an
    interrupted task is finished by the next run.
    """,
)
@click.option(
    "--workers",
    "-w",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Tasks run at once; keep 2 or more so a retrain does not hold up other tasks.",
)
@click.option(
    "--worker-type",
    type=click.Choice(["thread", "process"]),
    default="thread",
    show_default=True,
    help="Run the tasks in threads or in processes.",
)
@click.pass_context
def command(ctx: click.Context, workers: int, worker_type: str) -> None:
    from worker.main import run

    run(settings_of(ctx), workers=workers, worker_type=worker_type)
