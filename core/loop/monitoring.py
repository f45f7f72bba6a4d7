"""The learning loop as the registry records it, for the worker's metrics.

Every figure is read from the registry when Prometheus scrapes, not counted by a process:
several workers share one registry, and each then reports the same truth, which survives
restarts and includes the checks run from the command line. Retrain outcomes come from the
retrain journal (a finished run is promoted or refused) and from the audit log (a check not
due, one that failed, one that stood down because another held the maintenance lock).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from core.errors import ClassifiError
from core.model.versions import champion
from core.registry import AuditEntry, Photo, PhotoStatus, Registry, RetrainRun

log = logging.getLogger(__name__)

#: Audit actions of the retrain check (the first three are written by core.loop.policy).
NOT_DUE, STARTED, DECIDED = "retrain.check", "retrain.start", "retrain.decision"
FAILED, STOOD_DOWN = "retrain.failed", "retrain.stood_down"
#: The checks that ran (the last one's time says whether the schedule still fires); one that
#: stood down did not run, so a hung retrain holding the lock does not look like activity.
RAN = (NOT_DUE, STARTED, DECIDED, FAILED)

RETRAIN_OUTCOMES = ("promoted", "refused", "not_due", "failed", "stood_down")


@dataclass(frozen=True)
class LoopSnapshot:
    photos: dict[str, int]  # by PhotoStatus value, each status present
    retrain_runs: dict[str, int]  # by outcome (RETRAIN_OUTCOMES), each present
    champion_accuracy: float | None
    champion_promoted_at: datetime | None
    last_retrain_check_at: datetime | None


def loop_snapshot(registry: Registry) -> LoopSnapshot:
    """Counts and times of the learning loop, in a few indexed queries."""
    with registry.session() as session:
        photos = dict.fromkeys((status.value for status in PhotoStatus), 0)
        for status, count in session.execute(
            select(Photo.status, func.count()).group_by(Photo.status)
        ):
            photos[status.value] = count
        runs = dict.fromkeys(RETRAIN_OUTCOMES, 0)
        for promoted, count in session.execute(
            select(RetrainRun.promoted, func.count())
            .where(RetrainRun.finished_at.is_not(None))
            .group_by(RetrainRun.promoted)
        ):
            runs["promoted" if promoted else "refused"] += count
        audited = {
            action: (count, last)
            for action, count, last in session.execute(
                select(AuditEntry.action, func.count(), func.max(AuditEntry.at))
                .where(AuditEntry.action.in_((*RAN, STOOD_DOWN)))
                .group_by(AuditEntry.action)
            )
        }
    for outcome, action in (("not_due", NOT_DUE), ("failed", FAILED), ("stood_down", STOOD_DOWN)):
        runs[outcome] = audited.get(action, (0, None))[0]
    times = [audited[action][1] for action in RAN if action in audited]
    current = champion(registry)
    accuracy = current.metrics.get("accuracy") if current else None
    return LoopSnapshot(
        photos=photos,
        retrain_runs=runs,
        champion_accuracy=None if accuracy is None else float(accuracy),
        champion_promoted_at=current.promoted_at if current else None,
        last_retrain_check_at=max(times) if times else None,
    )


def record_check(registry: Registry, action: str, actor: str, reason: str) -> None:
    """Audit a retrain check that failed or stood down, as the snapshot counts them. Best
    effort: when the registry itself is what failed, the error that matters is the first."""
    try:
        with registry.session() as session:
            session.add(AuditEntry(actor=actor, action=action, detail={"reason": reason}))
    except ClassifiError as exc:
        log.warning("could not audit the retrain check (%s): %s", action, exc)
