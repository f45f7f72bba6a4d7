"""The weekly retrain check, in the app, when no worker serves the queue (local mode).

A worker runs the check on ``retrain_schedule`` (a cron schedule, Saturday 00:00 by default).
Without one, the app does, in a child process (:mod:`desktop.jobs`): at each scheduled minute
while it runs, and once at start when a scheduled time passed since the last check it ran
(kept in the app's preferences, at most a week back), so a computer that sleeps on Saturday
nights still retrains. The maintenance lock keeps it from running beside another retrain.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from PySide6.QtCore import QObject, QSettings, QTimer, Signal

from desktop.backends import Backend
from desktop.backends.local import ADMIN_ACTOR
from desktop.job_process import RETRAIN
from desktop.jobs import Job

TICK_MS = 60_000
LAST_CHECK = "retrain/last_check"  # the preference: when the app last ran the check
LOOK_BACK = timedelta(days=7)


def slot_between(schedule: Callable[[datetime], bool], since: datetime, now: datetime) -> bool:
    """Whether ``schedule`` names a minute after ``since`` and at or before ``now`` (looking
    at most a week back)."""
    minute = now.replace(second=0, microsecond=0)
    start = max(since, now - LOOK_BACK)
    while minute > start:
        if schedule(minute):
            return True
        minute -= timedelta(minutes=1)
    return False


class WeeklyCheck(QObject):
    """Starts the retrain check (not forced) when it is due and the backend runs jobs here."""

    started = Signal(object)  # the Job

    def __init__(self, backend: Callable[[], Backend], prefs: QSettings, parent: QObject) -> None:
        from worker.huey_app import parse_cron  # the worker's own reading of the schedule

        super().__init__(parent)
        self._backend = backend
        self._prefs = prefs
        self._schedule = parse_cron(backend().settings.retrain_schedule, "retrain_schedule")
        self.job: Job | None = None
        self._timer = QTimer(self, interval=TICK_MS)
        self._timer.timeout.connect(self.tick)

    def start(self) -> None:
        self._timer.start()
        self.tick()

    def due(self, now: datetime) -> bool:
        last = self._prefs.value(LAST_CHECK)
        if not isinstance(last, str):  # the first start counts from now
            self._prefs.setValue(LAST_CHECK, now.isoformat(timespec="minutes"))
            return False
        return slot_between(self._schedule, datetime.fromisoformat(last), now)

    def tick(self) -> None:
        backend = self._backend()
        now = datetime.now()
        if (self.job is not None and self.job.running) or not self.due(now):
            return
        if backend.mode != "local" or not backend.jobs_run_here():
            return  # a worker (or the edge server's) runs the check
        self._prefs.setValue(LAST_CHECK, now.isoformat(timespec="minutes"))
        self.job = Job(RETRAIN, backend.settings, False, actor=ADMIN_ACTOR, parent=self)
        self.job.start()
        self.started.emit(self.job)
