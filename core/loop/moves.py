"""Crash-safe moves of photos between prefixes of the bucket.

A move is journalled in the photo's own row, so that no photo is ever lost, orphaned or
counted twice, whatever instant the process dies at:

1. one transaction records the intent: ``moving_to`` names the destination key, together with
   every change of the row that goes with the move (status, labels, reviewer);
2. the object moves (the stores' ``move`` is idempotent);
3. one transaction points the row at the new key and clears ``moving_to``.

A row with ``moving_to`` set is an unfinished move; :func:`finish_move` rolls it forward and
anyone may call it any number of times (:func:`resume_moves` does it for every row). Two
markers that are not keys extend the same journal to deletion and to new uploads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Update, delete, select, update
from sqlalchemy.orm import Session

from core.errors import Conflict, NotFound
from core.registry import Photo, Registry
from core.store import ObjectStore

log = logging.getLogger(__name__)

#: ``moving_to`` marker: the object and then its row are being deleted.
DELETING = "!delete"
#: ``moving_to`` marker: the row was inserted first and its object is being uploaded.
UPLOADING = "!upload"
#: An upload marker younger than this may belong to a request still running; leave it alone.
UPLOAD_GRACE = timedelta(minutes=10)

#: Called with a step name between the steps of a move or a retrain. Production passes nothing;
#: the crash tests raise (or SIGKILL themselves) there to die at every step in turn.
Checkpoint = Callable[[str], None]


def no_checkpoint(_step: str) -> None:
    """The default checkpoint: nothing happens between steps."""


def claim_move(
    session: Session, photo_id: int, expected: dict[str, object], **changes: object
) -> None:
    """Record a move (``changes`` includes ``moving_to``) in the caller's transaction.

    The update only applies if the row still has the ``expected`` column values and no other
    move in flight: a compare-and-set that is atomic on SQLite and PostgreSQL alike, so that two
    reviewers (or a reviewer and the retrain) never both move one photo.
    """
    conditions = [Photo.id == photo_id, Photo.moving_to.is_(None)]
    conditions += [getattr(Photo, name) == value for name, value in expected.items()]
    result = session.execute(
        update(Photo)
        .where(*conditions)
        .values(**changes, updated_at=datetime.now(UTC))
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        current = session.get(Photo, photo_id)
        if current is None:
            raise NotFound(f"Photo {photo_id} does not exist.")
        raise Conflict(
            f"Photo {photo_id} changed meanwhile (now {current.status}"
            f"{', being moved' if current.moving_to else ''}); reload and decide again."
        )


def finish_move(
    registry: Registry, store: ObjectStore, photo_id: int, checkpoint: Checkpoint = no_checkpoint
) -> None:
    """Roll the unfinished move of one photo forward; nothing happens if there is none."""
    with registry.session() as session:
        photo = session.get(Photo, photo_id)
        if photo is None or photo.moving_to is None:
            return
        source, target = photo.object_key, photo.moving_to

    if target == DELETING:
        store.delete(source)
        checkpoint("move:object-deleted")
        with registry.session() as session:
            session.execute(delete(Photo).where(Photo.id == photo_id, Photo.moving_to == DELETING))
        return
    if target == UPLOADING:
        with registry.session() as session:
            if store.exists(source):
                # The upload finished before the process died: the submission stands.
                session.execute(_cleared(photo_id, UPLOADING))
            else:
                session.execute(
                    delete(Photo).where(Photo.id == photo_id, Photo.moving_to == UPLOADING)
                )
        return

    try:
        store.move(source, target)
    except NotFound:
        if not store.exists(target):
            raise
        # Another process finished this very move between our read and our move.
    checkpoint("move:object-moved")
    with registry.session() as session:
        session.execute(
            _cleared(photo_id, target).values(object_key=target, url_s3=store.url_for(target))
        )


def _cleared(photo_id: int, marker: str) -> Update:
    """The last step: clear the marker, only if it is still the one we finished."""
    return (
        update(Photo)
        .where(Photo.id == photo_id, Photo.moving_to == marker)
        .values(moving_to=None, updated_at=datetime.now(UTC))
        .execution_options(synchronize_session=False)
    )


def unfinished_moves(registry: Registry, *, upload_grace: timedelta = UPLOAD_GRACE) -> list[int]:
    """Ids of the photos with a move to finish (uploads only once older than the grace)."""
    young_upload = (Photo.moving_to == UPLOADING) & (
        Photo.updated_at > datetime.now(UTC) - upload_grace
    )
    with registry.session() as session:
        return list(
            session.scalars(
                select(Photo.id)
                .where(Photo.moving_to.is_not(None), ~young_upload)
                .order_by(Photo.id)
            )
        )


def resume_moves(
    registry: Registry,
    store: ObjectStore,
    *,
    upload_grace: timedelta = UPLOAD_GRACE,
    checkpoint: Checkpoint = no_checkpoint,
) -> int:
    """Finish every unfinished move; returns how many there were."""
    ids = unfinished_moves(registry, upload_grace=upload_grace)
    for photo_id in ids:
        finish_move(registry, store, photo_id, checkpoint)
    if ids:
        log.info("finished %d interrupted photo move(s)", len(ids))
    return len(ids)
