"""Admin review of submissions: list the pending ones, approve, correct, reject, undo.

Every decision is a crash-safe move (:mod:`core.loop.moves`) recorded in the audit log in the
same transaction as its intent. Each prefix holds one status, so the bucket and the registry
can be checked against each other (:mod:`core.loop.doctor`):

- ``raw/new_data/pending_validation/``: pending
- ``raw/new_data/corrected_data/``: validated (approved, not yet trained on)
- ``raw/new_data/rejected/``: rejected and kept (``settings.keep_rejected``); otherwise the
  object and its row are deleted and the audit entry keeps the photo's sha256
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import PurePosixPath

from sqlalchemy import and_, case, func, select

from core.config import Settings
from core.errors import Conflict, NotFound, UnknownLabel
from core.imaging import CONTENT_TYPES
from core.loop.moves import DELETING, Checkpoint, claim_move, finish_move, no_checkpoint
from core.registry import AuditEntry, Photo, PhotoStatus, Registry
from core.store import CORRECTED_PREFIX, PENDING_PREFIX, ObjectStore, photo_key
from core.wire import AuditRecord, PendingPhoto, ReviewDecision

REJECTED_PREFIX = "raw/new_data/rejected/"

APPROVE = "review.approve"
REJECT = "review.reject"
UNDO = "review.undo"


def list_pending(
    registry: Registry, *, limit: int | None = None, offset: int = 0
) -> list[PendingPhoto]:
    """Pending submissions, most useful to review first.

    First those where the model disagrees with the proposed label, then the least sure
    predictions (no prediction at all counts as least sure), oldest first among equals.
    """
    disagreement = case(
        (
            and_(Photo.predicted_label.is_not(None), Photo.predicted_label != Photo.proposed_label),
            0,
        ),
        else_=1,
    )
    query = (
        select(Photo)
        .where(Photo.status == PhotoStatus.PENDING, Photo.moving_to.is_(None))
        .order_by(disagreement, func.coalesce(Photo.predicted_confidence, -1.0), Photo.id)
        .offset(offset)
        .limit(limit)
    )
    with registry.session() as session:
        return [
            PendingPhoto(
                id=photo.id,
                object_key=photo.object_key,
                proposed_label=photo.proposed_label,
                prediction=photo.predicted_label,
                confidence=photo.predicted_confidence,
                status=photo.status,
                submitted_by=photo.submitted_by,
                submitted_at=photo.created_at,
                near_duplicate_of=photo.near_duplicate_of,
                near_duplicate_distance=photo.near_duplicate_distance,
            )
            for photo in session.scalars(query)
        ]


def _key_under(prefix: str, photo: Photo) -> str:
    return photo_key(prefix, photo.sha256, PurePosixPath(photo.object_key).suffix)


def _pending_photos(registry: Registry, photo_ids: Sequence[int]) -> dict[int, Photo]:
    """The photos, all checked before any is changed: a bulk decision is all or nothing."""
    if not photo_ids:
        raise NotFound("No photo ids given: name at least one pending photo.")
    with registry.session() as session:
        photos = {
            photo.id: photo
            for photo in session.scalars(select(Photo).where(Photo.id.in_(set(photo_ids))))
        }
    missing = sorted(set(photo_ids) - set(photos))
    if missing:
        raise NotFound(f"No photo with id {', '.join(map(str, missing))}.")
    not_pending = sorted(
        f"{photo.id} ({photo.status})"
        for photo in photos.values()
        if photo.status != PhotoStatus.PENDING or photo.moving_to is not None
    )
    if not_pending:
        raise Conflict(
            f"Only pending photos can be reviewed; these are not: {', '.join(not_pending)}."
        )
    return photos


def photo_image(registry: Registry, store: ObjectStore, photo_id: int) -> tuple[bytes, str]:
    """A registered photo's bytes and content type, for a reviewer to look at."""
    with registry.session() as session:
        photo = session.get(Photo, photo_id)
        if photo is None:
            raise NotFound(f"No photo with id {photo_id}.")
        key, image_format = photo.object_key, photo.image_format
    return store.get(key), CONTENT_TYPES.get(image_format, "application/octet-stream")


def audit_log(registry: Registry, limit: int = 500) -> list[AuditRecord]:
    """The newest decisions first."""
    with registry.session() as session:
        entries = session.scalars(
            select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        ).all()
        return [
            AuditRecord(
                at=entry.at.replace(microsecond=0),
                actor=entry.actor,
                action=entry.action,
                photo_id=entry.photo_id,
                model_version_id=entry.model_version_id,
                old_label=entry.old_label,
                new_label=entry.new_label,
            )
            for entry in entries
        ]


def check_label(settings: Settings, label: str) -> str:
    if label not in settings.labels:
        raise UnknownLabel(
            f"Unknown label {label!r}: use one of {', '.join(settings.labels)} (setting 'labels')."
        )
    return label


def approve(
    settings: Settings,
    registry: Registry,
    store: ObjectStore,
    photo_ids: Sequence[int],
    *,
    actor: str,
    label: str | None = None,
    checkpoint: Checkpoint = no_checkpoint,
) -> list[ReviewDecision]:
    """Approve pending photos with their proposed label, or with ``label`` (a correction).

    Each moves to ``corrected_data/`` and becomes validated, waiting for the next retrain.
    """
    if label is not None:
        check_label(settings, label)
    photos = _pending_photos(registry, photo_ids)
    for photo in photos.values():
        if label is None and photo.proposed_label not in settings.labels:
            raise UnknownLabel(
                f"Photo {photo.id} was proposed as {photo.proposed_label!r}, which is not a "
                f"label any more: approve it with --label one of {', '.join(settings.labels)}."
            )
    decisions = []
    for photo_id in dict.fromkeys(photo_ids):
        photo = photos[photo_id]
        new_label = label or photo.proposed_label
        with registry.session() as session:
            claim_move(
                session,
                photo.id,
                {"status": PhotoStatus.PENDING},
                moving_to=_key_under(CORRECTED_PREFIX, photo),
                status=PhotoStatus.VALIDATED,
                label=new_label,
                validated_label=new_label,
                validated_by=actor,
                validated_at=datetime.now(UTC),
            )
            entry = AuditEntry(
                actor=actor,
                action=APPROVE,
                photo_id=photo.id,
                old_label=photo.proposed_label,
                new_label=new_label,
                detail={
                    "corrected": new_label != photo.proposed_label,
                    "prediction": photo.predicted_label,
                    "confidence": photo.predicted_confidence,
                },
            )
            session.add(entry)
            session.flush()
            audit_id = entry.id
        checkpoint("review:claimed")
        finish_move(registry, store, photo.id, checkpoint)
        decisions.append(
            ReviewDecision(
                photo_id=photo.id,
                action=APPROVE,
                old_label=photo.proposed_label,
                new_label=new_label,
                status=PhotoStatus.VALIDATED,
                audit_id=audit_id,
            )
        )
    return decisions


def reject(
    settings: Settings,
    registry: Registry,
    store: ObjectStore,
    photo_ids: Sequence[int],
    *,
    actor: str,
    checkpoint: Checkpoint = no_checkpoint,
) -> list[ReviewDecision]:
    """Reject pending photos: they never train. Kept under ``rejected/`` or deleted."""
    photos = _pending_photos(registry, photo_ids)
    decisions = []
    for photo_id in dict.fromkeys(photo_ids):
        photo = photos[photo_id]
        target = _key_under(REJECTED_PREFIX, photo) if settings.keep_rejected else DELETING
        with registry.session() as session:
            claim_move(
                session,
                photo.id,
                {"status": PhotoStatus.PENDING},
                moving_to=target,
                status=PhotoStatus.REJECTED,
                validated_by=actor,
                validated_at=datetime.now(UTC),
            )
            entry = AuditEntry(
                actor=actor,
                action=REJECT,
                photo_id=photo.id,
                old_label=photo.proposed_label,
                new_label=None,
                detail={
                    "kept": settings.keep_rejected,
                    "sha256": photo.sha256,
                    "prediction": photo.predicted_label,
                },
            )
            session.add(entry)
            session.flush()
            audit_id = entry.id
        checkpoint("review:claimed")
        finish_move(registry, store, photo.id, checkpoint)
        status = PhotoStatus.REJECTED if settings.keep_rejected else None
        decisions.append(
            ReviewDecision(
                photo_id=photo.id,
                action=REJECT,
                old_label=photo.proposed_label,
                new_label=None,
                status=status,
                audit_id=audit_id,
            )
        )
    return decisions


def undo_last(
    settings: Settings,
    registry: Registry,
    store: ObjectStore,
    *,
    actor: str,
    checkpoint: Checkpoint = no_checkpoint,
) -> ReviewDecision:
    """Undo ``actor``'s latest review decision not undone yet: the photo is pending again.

    Refused (:class:`Conflict`) when the photo has moved on since: trained on, deleted on
    rejection, or decided again.
    """
    with registry.session() as session:
        undone = {
            (entry.detail or {}).get("undoes")
            for entry in session.scalars(
                select(AuditEntry).where(AuditEntry.actor == actor, AuditEntry.action == UNDO)
            )
        }
        decision = next(
            (
                entry
                for entry in session.scalars(
                    select(AuditEntry)
                    .where(AuditEntry.actor == actor, AuditEntry.action.in_((APPROVE, REJECT)))
                    .order_by(AuditEntry.id.desc())
                )
                if entry.id not in undone
            ),
            None,
        )
        if decision is None:
            raise NotFound(f"{actor} has no review decision left to undo.")
        photo = session.get(Photo, decision.photo_id) if decision.photo_id else None
    if photo is None:
        raise Conflict(
            "The photo of the last decision was deleted on rejection: it cannot come back."
        )
    left_as = PhotoStatus.VALIDATED if decision.action == APPROVE else PhotoStatus.REJECTED
    if photo.status != left_as:
        raise Conflict(
            f"Photo {photo.id} is {photo.status} now, no longer as the last decision left it; "
            "it cannot be undone."
        )
    with registry.session() as session:
        claim_move(
            session,
            photo.id,
            {"status": left_as},
            moving_to=_key_under(PENDING_PREFIX, photo),
            status=PhotoStatus.PENDING,
            label=None,
            validated_label=None,
            validated_by=None,
            validated_at=None,
        )
        entry = AuditEntry(
            actor=actor,
            action=UNDO,
            photo_id=photo.id,
            old_label=decision.new_label,
            new_label=photo.proposed_label,
            detail={"undoes": decision.id, "undone_action": decision.action},
        )
        session.add(entry)
        session.flush()
        audit_id = entry.id
    checkpoint("review:claimed")
    finish_move(registry, store, photo.id, checkpoint)
    return ReviewDecision(
        photo_id=photo.id,
        action=UNDO,
        old_label=decision.new_label,
        new_label=photo.proposed_label,
        status=PhotoStatus.PENDING,
        audit_id=audit_id,
    )
