"""Consistency of the bucket and the registry: find what a crash or a hand edit left, and
repair what can be repaired (``classifi doctor [--repair]``).

Checks, each with its repair:

- unfinished moves (rows with ``moving_to``): rolled forward (:mod:`core.loop.moves`);
- rows whose object is missing: the photo is gone, so the row is removed;
- photos outside the prefix their status implies: moved where they belong;
- photo objects without a row: under ``raw/<label>/`` registered as training photos (that is
  what an interrupted ingest leaves), elsewhere deleted (never acknowledged to anyone);
- model files without a row: deleted (never registered, so never promoted);
- model versions whose file is missing or damaged: reported (promote another or retrain);
- stray temporary files of the local store: deleted once older than the grace period;
- an unfinished retrain run: reported (the next ``classifi retrain-check`` finishes it).

Repairs must not race a retrain: callers hold the maintenance lock while repairing
(``App.doctor``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import delete, func, select, update

from core.config import Settings
from core.errors import Conflict, InvalidImage, NotFound
from core.imaging import check_photo
from core.ingest import photo_row
from core.loop.moves import UPLOAD_GRACE, claim_move, finish_move, unfinished_moves
from core.loop.review import REJECTED_PREFIX
from core.model.artifacts import remove_orphan_artifacts
from core.registry import AuditEntry, ModelState, ModelVersion, Photo, PhotoStatus, Registry
from core.registry.models import RetrainRun
from core.store import (
    CORRECTED_PREFIX,
    MODEL_PREFIX,
    PENDING_PREFIX,
    RAW_PREFIX,
    LocalStore,
    ObjectStore,
    label_prefix,
    photo_key,
)
from core.store.local import TEMP_PREFIX

log = logging.getLogger(__name__)

ACTOR = "doctor"


@dataclass(frozen=True)
class Issue:
    kind: str
    subject: str  # an object key, "photo <id>" or "model <id>"
    message: str
    repaired: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "message": self.message,
            "repaired": self.repaired,
        }


@dataclass
class DoctorReport:
    photos: int = 0
    objects: int = 0
    models: int = 0
    issues: list[Issue] = field(default_factory=list)
    #: Who held the maintenance lock during a check (whose work under way can look unfinished).
    lock_holder: str | None = None

    @property
    def clean(self) -> bool:
        """Nothing left to fix (repaired issues do not count)."""
        return all(issue.repaired for issue in self.issues)

    def to_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "photos": self.photos,
            "objects": self.objects,
            "models": self.models,
            "issues": [issue.to_dict() for issue in self.issues],
            "lock_holder": self.lock_holder,
        }


def expected_prefix(status: PhotoStatus, label: str | None) -> str:
    """Where a photo of this status lives."""
    if status == PhotoStatus.TRAINED:
        return label_prefix(str(label))
    return {
        PhotoStatus.PENDING: PENDING_PREFIX,
        PhotoStatus.VALIDATED: CORRECTED_PREFIX,
        PhotoStatus.REJECTED: REJECTED_PREFIX,
    }[status]


def check_consistency(
    settings: Settings,
    registry: Registry,
    store: ObjectStore,
    *,
    repair: bool = False,
    grace: timedelta = UPLOAD_GRACE,
) -> DoctorReport:
    """Compare the bucket with the registry; with ``repair``, fix what can be fixed."""
    report = DoctorReport()
    _unfinished_moves(registry, store, report, repair, grace)
    keys = set(store.list(RAW_PREFIX))
    report.objects = len(keys)
    referenced = _photo_rows(registry, store, keys, report, repair)
    _orphan_photos(settings, registry, store, keys - referenced, report, repair)
    _models(registry, store, report, repair)
    _temp_files(store, report, repair, grace)
    with registry.session() as session:
        open_run = session.scalar(select(RetrainRun.id).where(RetrainRun.finished_at.is_(None)))
    if open_run is not None:
        report.issues.append(
            Issue(
                "unfinished_retrain",
                f"retrain run {open_run}",
                "A retrain was interrupted before its decision: `classifi retrain-check` "
                "finishes it.",
            )
        )
    return report


def _unfinished_moves(
    registry: Registry, store: ObjectStore, report: DoctorReport, repair: bool, grace: timedelta
) -> None:
    for photo_id in unfinished_moves(registry, upload_grace=grace):
        message = "A move between prefixes was interrupted."
        repaired = False
        if repair:
            try:
                finish_move(registry, store, photo_id)
                repaired = True
            except NotFound:
                message += " Its object is neither where it was nor where it was going."
        report.issues.append(Issue("unfinished_move", f"photo {photo_id}", message, repaired))


def _photo_rows(
    registry: Registry, store: ObjectStore, keys: set[str], report: DoctorReport, repair: bool
) -> set[str]:
    """Check every row against the bucket; returns the keys rows account for."""
    with registry.session() as session:
        rows = session.execute(
            select(
                Photo.id, Photo.object_key, Photo.moving_to, Photo.status, Photo.label, Photo.sha256
            )
        ).all()
    report.photos = len(rows)
    named = {row.object_key for row in rows} | {row.moving_to for row in rows if row.moving_to}
    # Keys are content-addressed: an unnamed object with a row's file name holds its bytes.
    unnamed_by_name = {PurePosixPath(key).name: key for key in keys - named}
    referenced = set()
    for photo_id, key, moving_to, status, label, sha256 in rows:
        referenced.add(key)
        if moving_to is not None:
            referenced.add(moving_to)  # young uploads, left alone until the grace passes
            continue
        twin = unnamed_by_name.pop(PurePosixPath(key).name, None) if key not in keys else None
        if twin is not None:
            # The photo's bytes under another prefix (e.g. a copy taken while a move ran).
            if repair:
                with registry.session() as session:
                    session.execute(
                        update(Photo)
                        .where(Photo.id == photo_id)
                        .values(object_key=twin, url_s3=store.url_for(twin))
                    )
            report.issues.append(
                Issue(
                    "object_elsewhere",
                    f"photo {photo_id}",
                    f"The registry names {key}; its bytes are at {twin}.",
                    repaired=repair,
                )
            )
            referenced.add(twin)
            if not repair:
                continue
            key = twin  # then put where its status says, below
        elif key not in keys:
            if repair:
                with registry.session() as session:
                    session.execute(delete(Photo).where(Photo.id == photo_id))
                    session.add(
                        AuditEntry(
                            actor=ACTOR,
                            action="doctor.remove_row",
                            detail={"photo": photo_id, "key": key, "sha256": sha256},
                        )
                    )
            report.issues.append(
                Issue(
                    "missing_object",
                    f"photo {photo_id}",
                    f"The registry names {key}, which is not in the bucket.",
                    repaired=repair,
                )
            )
            continue
        where = expected_prefix(status, label)
        if not key.startswith(where):
            target = photo_key(where, sha256, PurePosixPath(key).suffix)
            moved = False
            if repair:
                try:
                    with registry.session() as session:
                        claim_move(session, photo_id, {"status": status}, moving_to=target)
                    finish_move(registry, store, photo_id)
                    referenced.add(target)
                    moved = True
                except Conflict:
                    pass  # it changed meanwhile; the next check sees where it went
            report.issues.append(
                Issue(
                    "misplaced",
                    f"photo {photo_id}",
                    f"A {status} photo belongs under {where}, not at {key}.",
                    repaired=moved,
                )
            )
    return referenced


def _orphan_photos(
    settings: Settings,
    registry: Registry,
    store: ObjectStore,
    orphans: set[str],
    report: DoctorReport,
    repair: bool,
) -> None:
    label_folders = {label_prefix(label): label for label in settings.labels}
    for key in sorted(orphans):
        folder = key.rsplit("/", 1)[0] + "/"
        label = label_folders.get(folder)
        if label is not None:
            repaired = repair and _register_orphan(settings, registry, store, key, label)
            message = f"No row names this training photo (label {label})."
        elif folder in (PENDING_PREFIX, CORRECTED_PREFIX, REJECTED_PREFIX):
            if repair:
                store.delete(key)
            repaired = repair
            message = "No row names this submission: it was never accepted."
        else:
            repaired = False
            message = "An object outside the bucket's layout; remove it by hand if unwanted."
        report.issues.append(Issue("orphan_object", key, message, repaired=repaired))


def _register_orphan(
    settings: Settings, registry: Registry, store: ObjectStore, key: str, label: str
) -> bool:
    """Register an object an interrupted ingest wrote; False if it is not a valid photo."""
    try:
        data = store.get(key)
        photo = check_photo(data, settings)
    except (NotFound, InvalidImage) as exc:
        log.warning("not registering %s: %s", key, exc)
        return False
    if PurePosixPath(key).stem != photo.sha256:
        log.warning("not registering %s: its name is not the sha256 of its bytes", key)
        return False
    try:
        with registry.session() as session:
            session.add(
                photo_row(
                    photo, store, key, store.url_for(key), status=PhotoStatus.TRAINED, label=label
                )
            )
    except Conflict:
        return False  # the same bytes are registered elsewhere: a copy, left for a human
    return True


def _models(registry: Registry, store: ObjectStore, report: DoctorReport, repair: bool) -> None:
    with registry.session() as session:
        versions = session.scalars(select(ModelVersion)).all()
        champions = session.scalar(
            select(func.count(ModelVersion.id)).where(ModelVersion.state == ModelState.CHAMPION)
        )
    report.models = len(versions)
    for version in versions:
        try:
            intact = hashlib.sha256(store.get(version.object_key)).hexdigest() == (
                version.artifact_sha256
            )
            problem = "" if intact else "does not match its checksum"
        except NotFound:
            problem = "is missing"
        if problem:
            report.issues.append(
                Issue(
                    "damaged_model",
                    f"model {version.id}",
                    f"The file {version.object_key} of this {version.state} version {problem}: "
                    "promote another version or retrain.",
                )
            )
    if (champions or 0) > 1:
        report.issues.append(
            Issue("champions", "models", f"{champions} versions are champion; promote one.")
        )
    registered = {version.object_key for version in versions}
    orphans = [key for key in store.list(MODEL_PREFIX) if key not in registered]
    removed = set(remove_orphan_artifacts(registry, store)) if repair and orphans else set()
    for key in orphans:
        report.issues.append(
            Issue(
                "orphan_model",
                key,
                "A model file no version names (an interrupted training).",
                repaired=key in removed,
            )
        )


def _temp_files(store: ObjectStore, report: DoctorReport, repair: bool, grace: timedelta) -> None:
    if not isinstance(store, LocalStore):
        return  # S3 writes are single requests: nothing half-written stays visible
    cutoff = time.time() - grace.total_seconds()
    for path in sorted(store.root.rglob(f"{TEMP_PREFIX}*")):
        if not path.is_file() or path.stat().st_mtime > cutoff:
            continue  # may be a write in progress
        if repair:
            path.unlink(missing_ok=True)
        report.issues.append(
            Issue(
                "temp_file",
                path.relative_to(store.root).as_posix(),
                "An unfinished write of the local store.",
                repaired=repair,
            )
        )
