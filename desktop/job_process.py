"""The child process of a long job (an import, a retrain): never the GUI's process.

It runs one use case of its own :class:`~core.app.App` on the home and reports through a
queue: ``("progress", stage, done, total)`` (stages "store", "embed", "train"),
``("epoch", stats)`` (each epoch's :class:`~core.model.metrics.EpochStats` as a dict), then
``("done", result)`` or ``("failed", code, status, message)``. Nothing but plain data crosses.

Cancelling is cooperative: when the parent sets ``cancel``, the next progress report raises
:class:`~core.errors.Cancelled` and the use case undoes what it had begun (the training's own
cleanup, a cancelled retrain's run closed, an import's photos removed). SIGTERM does the same
at the next Python instruction, for a child that must stop now.

Started with multiprocessing's spawn, which a frozen bundle supports (``freeze_support`` in
the launcher): a bundle has no interpreter to run ``python -c`` with.
"""

from __future__ import annotations

import logging
import signal
from dataclasses import asdict
from typing import Any, Protocol

from core.app import App
from core.config import Settings
from core.errors import Cancelled, ClassifiError, ServerError
from core.model.metrics import EpochStats

log = logging.getLogger(__name__)

IMPORT, RETRAIN = "import", "retrain"
JOBS = (IMPORT, RETRAIN)


class Events(Protocol):
    def put(self, item: Any) -> None: ...


class Flag(Protocol):
    def is_set(self) -> bool: ...


class Reporter:
    """Progress to the parent; raises :class:`Cancelled` once the parent asks for it."""

    def __init__(self, events: Events, cancel: Flag) -> None:
        self.events = events
        self.cancel = cancel

    def check(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("Cancelled: nothing was kept of what the job had begun.")

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.events.put(("progress", stage, done, total))
        self.check()

    def stored(self, done: int, total: int) -> None:
        self("store", done, total)

    def epoch(self, stats: EpochStats) -> None:
        self.events.put(("epoch", asdict(stats)))


def _stop_now(_signum: int, _frame: object) -> None:
    raise Cancelled("Stopped: nothing was kept of what the job had begun.")


def run_job(kind: str, settings: Settings, argument: Any, actor: str, reporter: Reporter) -> Any:
    """Carry out job ``kind`` on ``settings``' home; its result as plain data."""
    with App(settings, actor=actor) as app:
        reporter.check()
        if kind == IMPORT:
            outcome = app.import_photos(argument, stored=reporter.stored, progress=reporter)
            return outcome.to_dict()
        if kind == RETRAIN:
            return app.retrain_check(force=bool(argument), progress=reporter).to_dict()
    raise ValueError(f"unknown job {kind!r}: use one of {', '.join(JOBS)}")


def audit_labels_in_child(settings: Settings, actor: str) -> list[dict[str, Any]]:
    """The label audit, in a child process: cleanlab and scikit-learn never load in the
    GUI's process (they crashed it, running beside Qt on a task's thread), and their few
    hundred megabytes leave with the child."""
    with App(settings, actor=actor) as app:
        return [issue.to_dict() for issue in app.audit_labels()]


def child_main(
    kind: str, settings: Settings, argument: Any, actor: str, events: Events, cancel: Flag
) -> None:
    """The child's entry point (the target of the spawned process)."""
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    signal.signal(signal.SIGTERM, _stop_now)
    try:
        events.put(("done", run_job(kind, settings, argument, actor, Reporter(events, cancel))))
    except ClassifiError as exc:
        events.put(("failed", exc.code, exc.status, str(exc)))
    except BaseException as exc:  # a process boundary: the parent reports every failure
        log.exception("the %s job failed", kind)
        events.put(("failed", ServerError.code, 500, f"{type(exc).__name__}: {exc}"))
