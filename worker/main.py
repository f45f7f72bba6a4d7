"""The worker's entry point: run the Huey consumer for the settings' queue.

Stopping: SIGINT waits for running tasks to finish (a second SIGINT stops at once); SIGTERM
stops at once. Either way a task cut short is finished or undone by the next run, because
every step of the loop is journalled (``core.loop.moves``, ``core.loop.policy``).
"""

from __future__ import annotations

import logging

from huey import SqliteHuey
from huey.consumer import Consumer

from core.config import Settings
from worker.tasks import RETRAIN_LOCK, build_tasks

log = logging.getLogger(__name__)

WORKER_TYPES = ("thread", "process")


def create_consumer(
    settings: Settings, *, workers: int = 2, worker_type: str = "thread"
) -> Consumer:
    """The consumer: ``workers`` threads (or processes) plus the periodic scheduler.

    Two workers by default so a retrain (minutes of CPU, mostly in torch, which releases the
    GIL) never holds up an ingest or a re-embed queued behind it.
    """
    tasks = build_tasks(settings)
    # The embedded queue has one consumer, so a lock found at start is a killed run's: clear
    # it. On Redis other consumers may hold it legitimately; there it expires on its own.
    flush = isinstance(tasks.huey, SqliteHuey)
    return tasks.huey.create_consumer(
        workers=workers,
        worker_type=worker_type,
        periodic=True,
        check_worker_health=True,
        extra_locks=RETRAIN_LOCK if flush else None,
    )


def run(settings: Settings, *, workers: int = 2, worker_type: str = "thread") -> None:
    consumer = create_consumer(settings, workers=workers, worker_type=worker_type)
    log.info(
        "worker: %d %s worker(s) on %s; retrain check '%s', ingest '%s'",
        workers,
        worker_type,
        settings.queue_url,
        settings.retrain_schedule,
        settings.ingest_schedule or "off",
    )
    # The consumer's own start and stop lines are worth seeing in a worker's log.
    logging.getLogger("huey.consumer").setLevel(settings.log_level.upper())
    consumer.run()
    log.info("worker stopped")
