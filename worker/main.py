"""The worker's entry point: run the Huey consumer for the settings' queue.

Stopping: SIGINT waits for running tasks to finish (a second SIGINT stops at once); SIGTERM
stops at once. Either way a task cut short is finished or undone by the next run, because
every step of the loop is journalled (``core.loop.moves``, ``core.loop.policy``), and the
maintenance lock it held died with it.
"""

from __future__ import annotations

import logging

from core.config import Settings
from worker.tasks import build_tasks

log = logging.getLogger(__name__)


def run(settings: Settings, *, workers: int = 2, worker_type: str = "thread") -> None:
    """Run ``workers`` threads (or processes) plus the periodic scheduler until stopped.

    Two workers by default so a retrain (minutes of CPU, mostly in torch, which releases the
    GIL) never holds up an ingest queued behind it.
    """
    tasks = build_tasks(settings)
    consumer = tasks.huey.create_consumer(
        workers=workers, worker_type=worker_type, periodic=True, check_worker_health=True
    )
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
    try:
        consumer.run()
    finally:
        tasks.app.close()
    log.info("worker stopped")
