"""The retrain policy: when to retrain, and when a candidate may replace the champion.

A retrain check is due when ``settings.retrain_min_new`` validated photos wait in
``corrected_data/`` (or when forced). A due check is a :class:`RetrainRun`, journalled in the
registry so that a process killed at any step is finished by the next check:

1. one transaction opens the run and claims every validated photo for its move to
   ``raw/<label>/`` (as trained), then the moves happen (:mod:`core.loop.moves`);
2. the candidate trains on the training set; only photos missing from the embedding cache
   are embedded, i.e. the new ones;
3. the gate decides, on the holdout, and the decision closes the run.

The holdout is the training split's validation set: the seeded split of the training set
(:func:`core.model.training.validation_split`) holds a photo out when the hash of its sha256
falls below the validation fraction, whatever the other photos are. So the holdout is fixed:
the candidate never trained on it, the champion never trained on it either, and both are
compared on the same photos. It is per label set because a model is only comparable on the
labels it knows.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import func, select

from core.config import Settings
from core.errors import Cancelled, Conflict, TrainingRefused
from core.loop.moves import Checkpoint, claim_move, no_checkpoint, resume_moves
from core.model.training import (
    LabelledPhoto,
    Progress,
    evaluate_version,
    train_model,
    training_set,
    validation_split,
)
from core.model.versions import champion, get_version, set_champion
from core.registry import (
    AuditEntry,
    ModelState,
    ModelVersion,
    Photo,
    PhotoStatus,
    Registry,
    RetrainRun,
)
from core.store import ObjectStore, label_prefix, photo_key
from core.wire import GateDecision, RetrainOutcome

log = logging.getLogger(__name__)


def count_validated(registry: Registry) -> int:
    """Validated photos waiting for a retrain (not already claimed by one)."""
    with registry.session() as session:
        return int(
            session.scalar(
                select(func.count(Photo.id)).where(
                    Photo.status == PhotoStatus.VALIDATED, Photo.moving_to.is_(None)
                )
            )
            or 0
        )


def holdout(settings: Settings, photos: list[LabelledPhoto]) -> list[LabelledPhoto]:
    """The fixed validation holdout of a training set (see the module's docstring)."""
    _, validation = validation_split(photos, settings.validation_fraction, settings.split_seed)
    return [photos[index] for index in validation]


def retrain_check(
    settings: Settings,
    registry: Registry,
    store: ObjectStore,
    *,
    force: bool = False,
    actor: str = "scheduler",
    progress: Progress | None = None,
    checkpoint: Checkpoint = no_checkpoint,
) -> RetrainOutcome:
    """Retrain and gate when due; otherwise record why not. Resumes an interrupted run first.

    Only one check may run at a time: callers hold the maintenance lock (App.retrain_check).
    """
    resume_moves(registry, store, checkpoint=checkpoint)
    with registry.session() as session:
        run = session.scalars(
            select(RetrainRun).where(RetrainRun.finished_at.is_(None)).order_by(RetrainRun.id)
        ).first()
    if run is not None:
        log.info("resuming retrain run %s, interrupted before its decision", run.id)
        return _carry_out(settings, registry, store, run.id, progress, checkpoint)

    waiting = count_validated(registry)
    minimum = settings.retrain_min_new
    if waiting < minimum and not force:
        reason = (
            f"{waiting} of {minimum} new photos: the retrain waits for {minimum - waiting} more"
        )
        with registry.session() as session:
            session.add(
                AuditEntry(
                    actor=actor,
                    action="retrain.check",
                    detail={"due": False, "new_validated": waiting, "reason": reason},
                )
            )
        return RetrainOutcome(
            due=False, new_validated=waiting, candidate_version=None, promoted=False, reason=reason
        )

    run_id = _open_run(registry, actor=actor, forced=waiting < minimum)
    checkpoint("retrain:run-opened")
    return _carry_out(settings, registry, store, run_id, progress, checkpoint)


def _open_run(registry: Registry, *, actor: str, forced: bool) -> int:
    """Open the run and claim the waiting photos' moves, all in one transaction."""
    with registry.session() as session:
        run = RetrainRun(actor=actor, forced=forced, photos_moved=0)
        session.add(run)
        session.flush()
        waiting = session.execute(
            select(Photo.id, Photo.sha256, Photo.object_key, Photo.label).where(
                Photo.status == PhotoStatus.VALIDATED, Photo.moving_to.is_(None)
            )
        ).all()
        for photo_id, sha256, key, label in waiting:
            target = photo_key(label_prefix(str(label)), sha256, PurePosixPath(key).suffix)
            try:
                claim_move(
                    session,
                    photo_id,
                    {"status": PhotoStatus.VALIDATED},
                    moving_to=target,
                    status=PhotoStatus.TRAINED,
                )
            except Conflict:
                continue  # an admin undid its approval meanwhile
            run.photos_moved += 1
        session.add(
            AuditEntry(
                actor=actor,
                action="retrain.start",
                detail={"run": run.id, "photos": run.photos_moved, "forced": forced},
            )
        )
        return run.id


def _carry_out(
    settings: Settings,
    registry: Registry,
    store: ObjectStore,
    run_id: int,
    progress: Progress | None,
    checkpoint: Checkpoint,
) -> RetrainOutcome:
    resume_moves(registry, store, checkpoint=checkpoint)
    checkpoint("retrain:photos-moved")
    with registry.session() as session:
        run = session.get(RetrainRun, run_id)
        assert run is not None
        candidate_id = run.candidate_version_id or _orphan_candidate(session, run)
        moved, actor = run.photos_moved, run.actor

    if candidate_id is None:
        try:
            result = train_model(
                settings, registry, store, promote_if_first=False, progress=progress, actor=actor
            )
        except TrainingRefused as refusal:
            reason = f"training refused: {refusal}"
            _close_run(registry, run_id, None, False, reason)
            return RetrainOutcome(
                due=True,
                new_validated=moved,
                candidate_version=None,
                promoted=False,
                reason=reason,
                run_id=run_id,
            )
        except Cancelled:
            # Training leaves no model; the moves are done, so the photos join the training set.
            _close_run(registry, run_id, None, False, f"cancelled by {actor} before a candidate")
            raise
        candidate_id = result.version_id
    checkpoint("retrain:candidate-trained")
    with registry.session() as session:
        run = session.get(RetrainRun, run_id)
        assert run is not None
        run.candidate_version_id = candidate_id
    checkpoint("retrain:candidate-recorded")

    decision = gate(settings, registry, store, candidate_id, actor=actor)
    checkpoint("retrain:gated")
    _close_run(registry, run_id, candidate_id, decision.promoted, decision.reason)
    return RetrainOutcome(
        due=True,
        new_validated=moved,
        candidate_version=candidate_id,
        promoted=decision.promoted,
        reason=decision.reason,
        run_id=run_id,
        gate=decision,
    )


def _orphan_candidate(session: Any, run: RetrainRun) -> int | None:
    """A candidate this run trained before it died, not yet recorded on the run."""
    started = run.started_at
    return session.scalar(
        select(ModelVersion.id)
        .where(ModelVersion.state == ModelState.CANDIDATE, ModelVersion.created_at >= started)
        .order_by(ModelVersion.id.desc())
        .limit(1)
    )


def _close_run(
    registry: Registry, run_id: int, candidate_id: int | None, promoted: bool, reason: str
) -> None:
    with registry.session() as session:
        run = session.get(RetrainRun, run_id)
        assert run is not None
        run.finished_at = datetime.now(UTC)
        run.candidate_version_id = candidate_id
        run.promoted = promoted
        run.reason = reason
        session.add(
            AuditEntry(
                actor=run.actor,
                action="retrain.decision",
                model_version_id=candidate_id,
                detail={"run": run_id, "promoted": promoted, "reason": reason},
            )
        )


def gate(
    settings: Settings,
    registry: Registry,
    store: ObjectStore,
    candidate_id: int,
    *,
    actor: str,
) -> GateDecision:
    """Promote the candidate if it passes the gate, else mark it refused.

    Passing means accuracy on the holdout at or above ``settings.promotion_floor`` and not
    below the champion's on the same photos (no comparison without a champion). A champion
    that knows other labels cannot be compared with: the candidate stays a candidate, for an
    admin to promote. A candidate already decided keeps its decision.
    """
    floor = settings.promotion_floor
    candidate = get_version(registry, candidate_id)
    if candidate.state != ModelState.CANDIDATE:
        promoted = candidate.state in (ModelState.CHAMPION, ModelState.ARCHIVED)
        return GateDecision(
            candidate_version=candidate_id,
            promoted=promoted,
            reason=f"already decided: {candidate.state}",
            floor=floor,
            holdout_size=0,
            candidate_accuracy=None,
        )
    photos = holdout(settings, training_set(registry))
    accuracy = float(evaluate_version(settings, registry, store, candidate_id, photos)["accuracy"])
    current = champion(registry)
    champion_accuracy = None
    if current is not None and set(current.labels) != set(candidate.labels):
        reason = (
            f"champion v{current.id} knows the labels {', '.join(current.labels)}, the candidate "
            f"{', '.join(candidate.labels)}: an admin promotes the first model of a new label set"
        )
        log.info("gate on version %s: %s", candidate_id, reason)
        return GateDecision(
            candidate_version=candidate_id,
            promoted=False,
            reason=reason,
            floor=floor,
            holdout_size=len(photos),
            candidate_accuracy=accuracy,
            champion_version=current.id,
        )
    if current is not None:
        champion_accuracy = float(
            evaluate_version(settings, registry, store, current.id, photos)["accuracy"]
        )

    if accuracy < floor:
        promoted = False
        reason = f"accuracy {accuracy:.3f} on the holdout is below the floor {floor:.2f}"
    elif current is not None and champion_accuracy is not None and accuracy < champion_accuracy:
        promoted = False
        reason = (
            f"accuracy {accuracy:.3f} on the holdout is below champion v{current.id}'s "
            f"{champion_accuracy:.3f}"
        )
    else:
        promoted = True
        compared = (
            f" and not below champion v{current.id}'s {champion_accuracy:.3f}"
            if current is not None
            else " (no champion to compare with)"
        )
        reason = f"accuracy {accuracy:.3f} on the holdout reaches the floor {floor:.2f}{compared}"

    decision = GateDecision(
        candidate_version=candidate_id,
        promoted=promoted,
        reason=reason,
        floor=floor,
        holdout_size=len(photos),
        candidate_accuracy=accuracy,
        champion_version=current.id if current else None,
        champion_accuracy=champion_accuracy,
    )
    if promoted:
        set_champion(settings, registry, candidate_id, actor=actor, reason=f"gate: {reason}")
    else:
        with registry.session() as session:
            version = session.get(ModelVersion, candidate_id)
            assert version is not None
            version.state = ModelState.REFUSED
            session.add(
                AuditEntry(
                    actor=actor,
                    action="refuse",
                    model_version_id=candidate_id,
                    detail={"reason": f"gate: {reason}"},
                )
            )
    log.info("gate on version %s: %s", candidate_id, reason)
    return decision
