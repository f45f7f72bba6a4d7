"""The worker's tasks, and the functions front ends call to enqueue them.

Periodic:
- ``retrain_check`` on ``settings.retrain_schedule`` (default Saturday 00:00);
- ``scheduled_ingest`` of ``settings.ingest_sources`` on ``settings.ingest_schedule`` (off
  while either is empty).

On demand: ``retrain`` (forced by default) and ``reembed``. Every retrain holds the huey lock
:data:`RETRAIN_LOCK`, so two workers (or a worker and ``classifi retrain-check``) never retrain
at once; the one that finds the lock taken answers so instead of waiting.

The edge server and the desktop enqueue through :func:`enqueue_retrain` and read the outcome
with :func:`task_result`; they never run the consumer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from huey import Huey, RedisExpireHuey
from huey.api import TaskWrapper
from huey.exceptions import TaskException, TaskLockedException

from core.config import Settings
from core.errors import ModelError
from core.ingest import ingest
from core.loop.policy import RetrainCheck, retrain_check
from core.loop.reembed import reembed
from core.registry import Registry
from core.store import ObjectStore, open_store
from worker.huey_app import create_huey, parse_cron

log = logging.getLogger(__name__)

RETRAIN_LOCK = "retrain"
#: Where the storage supports it (Redis), a lock left by a killed worker expires after this.
#: A retrain on CPU takes minutes; SqliteHuey has no TTL and its consumer clears the lock on
#: start instead (one consumer per embedded queue).
RETRAIN_LOCK_TTL_S = 4 * 3600


def _locked_out() -> dict[str, Any]:
    return RetrainCheck(
        due=False,
        new_validated=0,
        candidate_version=None,
        promoted=False,
        reason="another retrain holds the lock; this check stood down",
    ).to_dict() | {"locked": True}


@dataclass
class Services:
    """The registry and store of this process, opened on first use by a task."""

    settings: Settings
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _opened: tuple[Registry, ObjectStore] | None = None

    def get(self) -> tuple[Registry, ObjectStore]:
        with self._lock:
            if self._opened is None:
                self._opened = (Registry(self.settings.registry_url), open_store(self.settings))
            return self._opened


@dataclass
class WorkerTasks:
    """One Huey instance with the project's tasks registered on it."""

    settings: Settings
    huey: Huey
    services: Services
    retrain_check: TaskWrapper  # periodic
    retrain: TaskWrapper  # on demand: retrain(force=True, actor="worker")
    reembed: TaskWrapper  # on demand: reembed(backbone_id=None)
    scheduled_ingest: TaskWrapper | None  # periodic, when configured

    def retrain_lock(self) -> Any:
        ttl = RETRAIN_LOCK_TTL_S if isinstance(self.huey, RedisExpireHuey) else None
        return self.huey.lock_task(RETRAIN_LOCK, ttl=ttl)

    def run_retrain_check(
        self, *, force: bool, actor: str, progress: Callable[[str, int, int], None] | None = None
    ) -> dict[str, Any]:
        """The retrain check under the lock, in this process (the CLI uses it directly)."""
        registry, store = self.services.get()
        try:
            with self.retrain_lock():
                result = retrain_check(
                    self.settings, registry, store, force=force, actor=actor, progress=progress
                )
        except TaskLockedException:
            log.info("retrain check by %s skipped: the lock is held", actor)
            return _locked_out()
        log.info("retrain check by %s: %s", actor, result.reason)
        return result.to_dict()


def build_tasks(settings: Settings, *, immediate: bool = False) -> WorkerTasks:
    """The Huey instance for ``settings`` with every task registered (no service opened yet).

    Schedules are parsed here, so a bad cron string fails at start with the setting's name.
    """
    huey = create_huey(settings, immediate=immediate)
    services = Services(settings)
    retrain_schedule = parse_cron(settings.retrain_schedule, "retrain_schedule")
    tasks: WorkerTasks

    @huey.periodic_task(retrain_schedule, name="retrain_check")
    def periodic_retrain_check() -> dict[str, Any]:
        return tasks.run_retrain_check(force=False, actor="scheduler")

    @huey.task(name="retrain")
    def retrain(force: bool = True, actor: str = "worker") -> dict[str, Any]:
        return tasks.run_retrain_check(force=force, actor=actor)

    @huey.task(name="reembed")
    def reembed_task(backbone_id: str | None = None) -> dict[str, Any]:
        registry, store = services.get()
        return reembed(settings, registry, store, backbone_id=backbone_id).to_dict()

    scheduled_ingest = None
    if settings.ingest_schedule and settings.ingest_sources:
        ingest_schedule = parse_cron(settings.ingest_schedule, "ingest_schedule")

        @huey.periodic_task(ingest_schedule, name="scheduled_ingest")
        def scheduled_ingest_task() -> dict[str, Any]:
            registry, store = services.get()
            reports = {}
            for source in settings.ingest_sources:
                reports[source] = ingest(source, settings, registry, store).to_dict()
                log.info("scheduled ingest of %s: %s", source, reports[source]["added"])
            return reports

        scheduled_ingest = scheduled_ingest_task
    elif settings.ingest_schedule or settings.ingest_sources:
        log.warning("scheduled ingest is off: it needs both ingest_sources and ingest_schedule set")

    tasks = WorkerTasks(
        settings, huey, services, periodic_retrain_check, retrain, reembed_task, scheduled_ingest
    )
    return tasks


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


def enqueue_reembed(settings: Settings, *, backbone_id: str | None = None) -> str:
    """Ask the workers to fill the embedding cache for a backbone; returns the task id."""
    return str(worker_tasks(settings).reembed(backbone_id).id)


def task_result(settings: Settings, task_id: str) -> dict[str, Any] | None:
    """The finished task's result, or None while it waits or runs (or is unknown: huey cannot
    tell). A task that failed raises :class:`ModelError` with the worker's error."""
    try:
        value = worker_tasks(settings).huey.result(task_id, preserve=True)
    except TaskException as exc:
        failure = exc.metadata.get("error") or str(exc)
        raise ModelError(
            f"Task {task_id} failed on the worker: {failure}. The worker's log has the details."
        ) from None
    return value if value is None else dict(value)
