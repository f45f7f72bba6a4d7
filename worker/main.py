"""The worker's entry point: run the Huey consumer for the settings' queue.

Stopping: SIGINT waits for running tasks to finish (a second SIGINT stops at once); SIGTERM
stops at once. Either way a task cut short is finished or undone by the next run, because
every step of the loop is journalled (``core.loop.moves``, ``core.loop.policy``), and the
maintenance lock it held died with it.

Metrics: Prometheus text on ``http://<worker_metrics_host>:<worker_metrics_port>/metrics``
(127.0.0.1:9100 by default; port 0 turns them off), from a thread of the consumer's process.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import start_http_server

from core import metrics
from core.app import App
from core.config import Settings
from core.errors import ConfigError
from core.memory import limit_malloc_arenas
from worker.tasks import build_tasks

log = logging.getLogger(__name__)


def run(settings: Settings, *, workers: int = 2, worker_type: str = "thread") -> None:
    """Run ``workers`` threads (or processes) plus the periodic scheduler until stopped.

    Two workers by default so a retrain (minutes of CPU, mostly in torch, which releases the
    GIL) never holds up an ingest queued behind it.
    """
    limit_malloc_arenas()  # before the consumer's threads start
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
        with serving_metrics(tasks.app):
            consumer.run()
    finally:
        tasks.app.close()
    log.info("worker stopped")


@contextmanager
def serving_metrics(app: App) -> Iterator[None]:
    """Serve the worker's metrics while the block runs (not at all when the port is 0)."""
    settings = app.settings
    host, port = settings.worker_metrics_host, settings.worker_metrics_port
    if not port:
        yield
        return
    try:
        server, thread = start_http_server(
            port, addr=host, registry=metrics.worker_registry(app.loop_snapshot)
        )
    except OSError as exc:
        raise ConfigError(
            f"The worker cannot serve its metrics on {host}:{port} ({exc.strerror or exc}): set "
            "worker_metrics_port to a free port (each worker on a machine needs its own), or "
            "to 0 to turn them off."
        ) from None
    log.info("worker metrics on http://%s:%d/metrics", host, port)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
