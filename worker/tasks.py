"""The worker's tasks, and the functions front ends call to enqueue them.

Periodic:
- ``retrain_check`` on ``settings.retrain_schedule`` (default Saturday 00:00);
- ``scheduled_ingest`` of ``settings.ingest_sources`` on ``settings.ingest_schedule`` (off
  while either is empty).

Every minute, and when the consumer starts, a heartbeat: a front end that finds it fresh
(:func:`worker_heartbeat`) knows a worker serves the queue and hands it jobs.

On demand: ``retrain`` (forced by default). Every retrain holds core's maintenance lock, so
two workers (or a worker and ``classifi retrain-check``) never retrain at once: the one that
finds the lock taken stands down and says so in its outcome, instead of waiting. And the
parts of a re-embed or an ingest split across the workers (:mod:`worker.fanout`):
``embed_chunk`` and ``ingest_chunk``, each safe to run twice.

A periodic task that raises is counted in ``classifi_scheduled_job_failures_total``.

Every task calls the process's one :class:`~core.app.App` and returns a JSON-able dict. The
edge server and the desktop enqueue through :func:`enqueue_retrain` and read the outcome with
:func:`task_result`; they never run the consumer.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from huey import Huey, crontab
from huey.api import PeriodicTask, Task, TaskWrapper
from huey.exceptions import TaskException
from huey.signals import SIGNAL_ERROR

from core import metrics
from core.app import App
from core.config import Settings
from core.errors import LockHeld, SourceError, TaskFailed
from core.ingest import Listing, SourceItem
from core.wire import RetrainOutcome
from worker.huey_app import create_huey, parse_cron

log = logging.getLogger(__name__)

#: How the reason of a retrain that found the maintenance lock taken begins.
STOOD_DOWN = "stood down"
#: Where the consumer's heartbeat (a Unix time) is kept in the queue's storage.
HEARTBEAT_KEY = "worker-heartbeat"


@dataclass(frozen=True)
class WorkerTasks:
    """One Huey instance with the project's tasks registered on it, and the app they call."""

    app: App
    huey: Huey
    retrain_check: TaskWrapper  # periodic, as "scheduler"
    retrain: TaskWrapper  # on demand: retrain(force=True, actor="worker")
    scheduled_ingest: TaskWrapper | None  # periodic, when configured
    embed_chunk: TaskWrapper  # embed_chunk(backbone_id, [[sha256, key], ...])
    ingest_chunk: TaskWrapper  # ingest_chunk([{"location": ..., "label": ...}, ...])


def retrain_outcome(app: App, *, force: bool, actor: str) -> dict[str, Any]:
    """The retrain check, under the maintenance lock; a held lock makes it stand down."""
    try:
        outcome = app.retrain_check(force=force, actor=actor)
    except LockHeld as held:
        outcome = RetrainOutcome(
            due=False,
            new_validated=0,
            candidate_version=None,
            promoted=False,
            reason=f"{STOOD_DOWN}: {held}",
        )
    log.info("retrain check by %s: %s", actor, outcome.reason)
    return outcome.to_dict()


def ingest_sources(app: App) -> dict[str, Any]:
    """Ingest each configured source: its report, or the error that stopped it (a source
    that is missing now, e.g. an unmounted share, does not stop the others)."""
    reports: dict[str, Any] = {}
    for source in app.settings.ingest_sources:
        try:
            report = app.ingest(app.list_source(source))
        except SourceError as exc:
            log.warning("scheduled ingest of %s failed: %s", source, exc)
            reports[source] = {"error": str(exc)}
            continue
        log.info(
            "scheduled ingest of %s: %d added, %d already present, %d skipped",
            source,
            report.added,
            report.already_present,
            len(report.skipped),
        )
        reports[source] = report.to_dict()
    return reports


def build_tasks(settings: Settings) -> WorkerTasks:
    """The Huey instance for ``settings`` with every task registered (nothing opened yet).

    Schedules are parsed here, so a bad cron string fails at start with the setting's name.
    """
    huey = create_huey(settings)
    app = App(settings, actor="worker")

    @huey.periodic_task(parse_cron(settings.retrain_schedule, "retrain_schedule"))
    def retrain_check() -> dict[str, Any]:
        return retrain_outcome(app, force=False, actor="scheduler")

    @huey.task()
    def retrain(force: bool = True, actor: str = "worker") -> dict[str, Any]:
        return retrain_outcome(app, force=force, actor=actor)

    def heartbeat() -> None:
        huey.put(HEARTBEAT_KEY, time.time())

    huey.on_startup()(heartbeat)
    huey.periodic_task(crontab(), name="heartbeat")(heartbeat)

    scheduled_ingest = None
    if settings.ingest_schedule and settings.ingest_sources:

        @huey.periodic_task(
            parse_cron(settings.ingest_schedule, "ingest_schedule"), name="scheduled_ingest"
        )
        def ingest_task() -> dict[str, Any]:
            return ingest_sources(app)

        scheduled_ingest = ingest_task
    elif settings.ingest_schedule or settings.ingest_sources:
        log.warning("scheduled ingest is off: it needs both ingest_sources and ingest_schedule set")

    @huey.task()
    def embed_chunk(backbone_id: str, photos: list[list[str]]) -> dict[str, Any]:
        embedded = app.embed_photos(backbone_id, [(sha256, key) for sha256, key in photos])
        return {"photos": len(photos), "embedded": embedded}

    @huey.task()
    def ingest_chunk(items: list[dict[str, str]]) -> dict[str, Any]:
        return app.ingest(Listing([SourceItem(**item) for item in items], [])).to_dict()

    periodic = [task.name for task in (retrain_check, scheduled_ingest) if task is not None]
    for name in periodic:  # a series at 0 from the start, so increase() sees the first failure
        metrics.SCHEDULED_JOB_FAILURES.labels(task=name)

    @huey.signal(SIGNAL_ERROR)
    def count_failure(_signal: str, task: Task, _exc: Exception | None = None) -> None:
        if isinstance(task, PeriodicTask):
            metrics.SCHEDULED_JOB_FAILURES.labels(task=task.name).inc()

    return WorkerTasks(
        app, huey, retrain_check, retrain, scheduled_ingest, embed_chunk, ingest_chunk
    )


_built: dict[str, WorkerTasks] = {}
_built_lock = threading.Lock()


def worker_tasks(settings: Settings) -> WorkerTasks:
    """The tasks bound to ``settings.queue_url``, built once per process."""
    with _built_lock:
        if settings.queue_url not in _built:
            _built[settings.queue_url] = build_tasks(settings)
        return _built[settings.queue_url]


def enqueue_retrain(settings: Settings, *, actor: str, force: bool = True) -> str:
    """Ask the workers to retrain now; returns the task id for :func:`task_result`."""
    result = worker_tasks(settings).retrain(force=force, actor=actor)
    return str(result.id)


def worker_heartbeat(settings: Settings) -> float | None:
    """When a consumer last said it serves ``settings.queue_url`` (a Unix time), or None."""
    beat = worker_tasks(settings).huey.get(HEARTBEAT_KEY, peek=True)
    return None if beat is None else float(beat)


def task_result(
    settings: Settings, task_id: str, *, preserve: bool = True
) -> dict[str, Any] | None:
    """The finished task's result (a :class:`RetrainOutcome` as a dict), or None while it
    waits or runs (or is unknown: huey cannot tell). A task that failed raises
    :class:`TaskFailed` with the worker's error. ``preserve=False`` reads it once, removing
    it from the queue's storage."""
    try:
        value = worker_tasks(settings).huey.result(task_id, preserve=preserve)
    except TaskException as exc:
        failure = exc.metadata.get("error") or str(exc)
        raise TaskFailed(
            f"Task {task_id} failed on the worker: {failure}. The worker's log has the details."
        ) from None
    return value if value is None else dict(value)
