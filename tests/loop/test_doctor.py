"""The doctor finds every kind of bucket/registry disagreement and repairs what it can."""

from __future__ import annotations

import os
import time

import pytest
from sqlalchemy import select

from core.imaging import sha256_of
from core.loop.doctor import check_consistency
from core.model.versions import champion
from core.registry import Photo, PhotoStatus
from core.store import PENDING_PREFIX, LocalStore, label_prefix, photo_key
from tests.installation import System

pytestmark = pytest.mark.slow


def kinds(report) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(issue.kind for issue in report.issues)


def test_a_fresh_installation_is_consistent(make_system) -> None:
    system: System = make_system()
    report = check_consistency(system.settings, system.registry, system.store)
    assert report.clean and not report.issues
    assert report.photos == report.objects == 120 and report.models == 1


def test_doctor_repairs_what_can_be_repaired(make_system, fresh_photos) -> None:
    system: System = make_system()
    settings, registry, store = system.settings, system.registry, system.store
    assert isinstance(store, LocalStore)

    # An object an interrupted ingest left without its row.
    data = fresh_photos["grass"][0].read_bytes()
    ingested = photo_key(label_prefix("grass"), sha256_of(data), ".jpg")
    store.put(ingested, data)
    # A submission object nobody registered.
    stray = photo_key(PENDING_PREFIX, "0" * 64, ".jpg")
    store.put(stray, b"whatever")
    with registry.session() as session:
        rows = session.scalars(select(Photo).order_by(Photo.id).limit(2)).all()
    lost, misplaced = rows[0], rows[1]
    # A row whose object vanished, and a photo filed under the wrong label.
    store.delete(lost.object_key)
    wrong_key = photo_key(
        label_prefix("dandelion" if misplaced.label == "grass" else "grass"),
        misplaced.sha256,
        ".jpg",
    )
    store.move(misplaced.object_key, wrong_key)
    with registry.session() as session:
        session.get(Photo, misplaced.id).object_key = wrong_key
    # A model file without a version, and an old and a young temporary file.
    store.put("model/2020-01-01/efficientnet_lite0_classifier_9.pth", b"half a model")
    old_temp = store.root / "raw" / ".tmp-old.part"
    old_temp.write_bytes(b"x")
    os.utime(old_temp, (time.time() - 3600, time.time() - 3600))
    (store.root / "raw" / ".tmp-young.part").write_bytes(b"x")

    found = check_consistency(settings, registry, store)
    assert kinds(found) == [
        "misplaced",
        "missing_object",
        "orphan_model",
        "orphan_object",
        "orphan_object",
        "temp_file",
    ]
    assert not found.clean

    repaired = check_consistency(settings, registry, store, repair=True)
    assert repaired.clean and kinds(repaired) == kinds(found)
    assert check_consistency(settings, registry, store).issues == []
    with registry.session() as session:
        assert session.get(Photo, lost.id) is None
        assert session.get(Photo, misplaced.id).object_key.startswith(
            label_prefix(str(misplaced.label))
        )
        recovered = session.scalars(select(Photo).where(Photo.object_key == ingested)).one()
    assert recovered.status == PhotoStatus.TRAINED and recovered.label == "grass"
    assert not store.exists(stray) and not old_temp.exists()
    assert (store.root / "raw" / ".tmp-young.part").exists()


def test_a_damaged_champion_is_reported_not_hidden(make_system) -> None:
    system: System = make_system()
    current = champion(system.registry)
    system.store.put(current.object_key, b"damaged")
    report = check_consistency(system.settings, system.registry, system.store, repair=True)
    assert kinds(report) == ["damaged_model"] and not report.clean
