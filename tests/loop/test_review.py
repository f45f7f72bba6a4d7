"""Submissions and their review: duplicates, labels, ordering, decisions, undo, audit."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from core.errors import Conflict, InvalidImage, NotFound, UnknownLabel
from core.loop.doctor import check_consistency
from core.loop.review import REJECTED_PREFIX, approve, list_pending, reject, undo_last
from core.loop.submissions import submit_photo
from core.registry import AuditEntry, Photo, PhotoStatus
from core.store import CORRECTED_PREFIX, PENDING_PREFIX
from tests.installation import System

pytestmark = pytest.mark.slow


def submit(system: System, path: Path, label: str | None = None):  # type: ignore[no-untyped-def]
    return submit_photo(
        system.settings,
        system.registry,
        system.store,
        path.read_bytes(),
        label or path.parent.name,
        submitted_by="visitor",
    )


def test_unknown_label_names_the_allowed_ones(make_system, fresh_photos) -> None:
    system: System = make_system()
    with pytest.raises(UnknownLabel, match="dandelion, grass"):
        submit(system, fresh_photos["grass"][0], "clover")
    with pytest.raises(InvalidImage):
        submit_photo(system.settings, system.registry, system.store, b"not a photo", "grass")
    assert list_pending(system.registry) == []


def test_submission_is_pending_with_the_prediction(make_system, fresh_photos) -> None:
    system: System = make_system()
    result = submit(system, fresh_photos["grass"][0])
    assert result.stored and result.status == PhotoStatus.PENDING and result.duplicate is None
    assert result.prediction == "grass" and result.model_version == 1
    with system.registry.session() as session:
        row = session.get(Photo, result.photo_id)
    assert row.object_key.startswith(PENDING_PREFIX) and row.moving_to is None
    assert (row.proposed_label, row.submitted_by, row.label) == ("grass", "visitor", None)
    assert row.predicted_confidence == pytest.approx(result.confidence)
    assert system.store.exists(row.object_key)
    again = submit(system, fresh_photos["grass"][0])
    assert not again.stored and again.duplicate_of == result.photo_id
    assert again.status == PhotoStatus.PENDING


def test_submission_without_a_champion_is_accepted(tmp_path, fresh_photos) -> None:
    system = System.open(tmp_path / "empty")
    result = submit(system, fresh_photos["dandelion"][0])
    assert result.stored and result.prediction is None and result.confidence is None
    near = submit_photo(
        system.settings,
        system.registry,
        system.store,
        _mirrored(fresh_photos["dandelion"][0]),
        "dandelion",
    )
    assert near.duplicate_of == result.photo_id and near.duplicate.kind == "near"


def _mirrored(path: Path) -> bytes:
    import io

    from PIL import Image, ImageOps

    buffer = io.BytesIO()
    ImageOps.mirror(Image.open(path).convert("RGB")).save(buffer, "PNG")
    return buffer.getvalue()


def test_pending_list_puts_disagreements_first(make_system, fresh_photos) -> None:
    system: System = make_system()
    agreeing = [submit(system, path).photo_id for path in fresh_photos["grass"][:3]]
    disagreeing = submit(system, fresh_photos["dandelion"][0], "grass").photo_id
    pending = list_pending(system.registry)
    assert pending[0].id == disagreeing and pending[0].disagrees
    assert {p.id for p in pending[1:]} == set(agreeing)
    confidences = [p.confidence for p in pending[1:]]
    assert confidences == sorted(confidences)
    assert [p.id for p in list_pending(system.registry, limit=2, offset=1)] == [
        p.id for p in pending[1:3]
    ]


def test_approve_correct_reject_and_audit(make_system, fresh_photos) -> None:
    system: System = make_system()
    settings, registry, store = system.settings, system.registry, system.store
    ids = [submit(system, path).photo_id for path in fresh_photos["grass"][:4]]
    approve(settings, registry, store, ids[:2], actor="alice")
    approve(settings, registry, store, [ids[2]], actor="alice", label="dandelion")
    reject(settings, registry, store, [ids[3]], actor="bob")

    with registry.session() as session:
        rows = {p.id: p for p in session.scalars(select(Photo).where(Photo.id.in_(ids)))}
        audit = session.scalars(
            select(AuditEntry).where(AuditEntry.action.like("review.%")).order_by(AuditEntry.id)
        ).all()
    assert [rows[i].status for i in ids] == [PhotoStatus.VALIDATED] * 3 + [PhotoStatus.REJECTED]
    assert rows[ids[2]].label == rows[ids[2]].validated_label == "dandelion"
    assert rows[ids[0]].validated_by == "alice" and rows[ids[0]].validated_at is not None
    assert all(rows[i].object_key.startswith(CORRECTED_PREFIX) for i in ids[:3])
    assert rows[ids[3]].object_key.startswith(REJECTED_PREFIX)
    decisions = [(a.actor, a.action, a.photo_id, a.old_label, a.new_label) for a in audit]
    assert decisions == [
        ("alice", "review.approve", ids[0], "grass", "grass"),
        ("alice", "review.approve", ids[1], "grass", "grass"),
        ("alice", "review.approve", ids[2], "grass", "dandelion"),
        ("bob", "review.reject", ids[3], "grass", None),
    ]
    assert check_consistency(settings, registry, store).clean


def test_bulk_decision_is_all_or_nothing(make_system, fresh_photos) -> None:
    system: System = make_system()
    settings, registry, store = system.settings, system.registry, system.store
    ids = [submit(system, path).photo_id for path in fresh_photos["grass"][:2]]
    approve(settings, registry, store, [ids[0]], actor="alice")
    with pytest.raises(Conflict, match="Only pending"):
        approve(settings, registry, store, ids, actor="alice")
    with pytest.raises(NotFound, match="999"):
        reject(settings, registry, store, [ids[1], 999], actor="alice")
    with pytest.raises(UnknownLabel):
        approve(settings, registry, store, [ids[1]], actor="alice", label="clover")
    assert [p.id for p in list_pending(registry)] == [ids[1]]


def test_rejected_photos_are_deleted_when_not_kept(make_system, fresh_photos) -> None:
    system: System = make_system(keep_rejected=False)
    photo = submit(system, fresh_photos["grass"][0])
    with system.registry.session() as session:
        key = session.get(Photo, photo.photo_id).object_key
    decision = reject(
        system.settings, system.registry, system.store, [photo.photo_id], actor="bob"
    )[0]
    assert decision.status is None and not system.store.exists(key)
    with system.registry.session() as session:
        assert session.get(Photo, photo.photo_id) is None
        entry = session.get(AuditEntry, decision.audit_id)
    assert entry.detail["sha256"] and entry.detail["kept"] is False
    with pytest.raises(Conflict, match="deleted"):
        undo_last(system.settings, system.registry, system.store, actor="bob")


def test_undo_the_last_decisions_one_by_one(make_system, fresh_photos) -> None:
    system: System = make_system()
    settings, registry, store = system.settings, system.registry, system.store
    first, second = (submit(system, path).photo_id for path in fresh_photos["grass"][:2])
    approve(settings, registry, store, [first], actor="alice", label="dandelion")
    reject(settings, registry, store, [second], actor="alice")

    undone = undo_last(settings, registry, store, actor="alice")
    assert undone.photo_id == second and undone.status == PhotoStatus.PENDING
    undone = undo_last(settings, registry, store, actor="alice")
    assert undone.photo_id == first and undone.old_label == "dandelion"
    with pytest.raises(NotFound):
        undo_last(settings, registry, store, actor="alice")
    pending = {p.id: p for p in list_pending(registry)}
    assert set(pending) == {first, second}
    with registry.session() as session:
        row = session.get(Photo, first)
    assert (row.label, row.validated_label, row.validated_by) == (None, None, None)
    assert row.object_key.startswith(PENDING_PREFIX)
    assert check_consistency(settings, registry, store).clean
