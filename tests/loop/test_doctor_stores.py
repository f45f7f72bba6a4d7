"""The doctor on every store pairing (SQLite or PostgreSQL, the local folder or a real S3
endpoint), and its repairs refused while another process holds the maintenance lock."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from core.app import App
from core.errors import LockHeld
from core.registry import Photo
from core.store import label_prefix, photo_key
from tests.installation import System
from tests.locks.test_maintenance_lock import hold_in_child
from tests.loop.conftest import link_folder

pytestmark = pytest.mark.slow


def test_doctor_repairs_on_every_store_pairing(
    tmp_path: Path, registry_url: str, store_url: str, dataset_photos: dict[str, list[Path]]
) -> None:
    system = System.open(tmp_path / "home", registry_url=registry_url, store_url=store_url)
    app = App(system.settings, actor="tester")
    photos = {label: paths[:4] for label, paths in dataset_photos.items()}
    assert app.ingest(app.list_source(str(link_folder(tmp_path / "source", photos)))).added == 8
    with system.registry.session() as session:
        lost, moved_away, misplaced = session.scalars(select(Photo).order_by(Photo.id)).all()[:3]
    system.store.delete(lost.object_key)
    # Its bytes under another prefix, as a copy taken while a move ran would leave them.
    elsewhere = photo_key("raw/new_data/corrected_data/", moved_away.sha256, ".jpg")
    system.store.move(moved_away.object_key, elsewhere)
    wrong = photo_key(
        label_prefix("grass" if misplaced.label == "dandelion" else "dandelion"),
        misplaced.sha256,
        ".jpg",
    )
    system.store.move(misplaced.object_key, wrong)
    with system.registry.session() as session:
        session.get(Photo, misplaced.id).object_key = wrong

    found = app.doctor()
    assert sorted(issue.kind for issue in found.issues) == [
        "misplaced",
        "missing_object",
        "object_elsewhere",
    ]
    assert app.doctor(repair=True).clean
    assert app.doctor().issues == []
    with system.registry.session() as session:
        assert session.get(Photo, lost.id) is None
        back = session.get(Photo, moved_away.id)
        assert back is not None and back.object_key == moved_away.object_key
        assert session.get(Photo, misplaced.id).object_key == misplaced.object_key
    assert system.store.exists(moved_away.object_key) and not system.store.exists(elsewhere)
    app.close()
    system.registry.dispose()


def test_repairs_wait_for_the_lock_holder(tmp_path: Path, registry_url: str) -> None:
    system = System.open(tmp_path / "home", registry_url=registry_url)
    app = App(system.settings, actor="tester")
    child = hold_in_child(registry_url)
    try:
        assert app.doctor().clean  # checking needs no lock
        with pytest.raises(LockHeld, match=f"retrain by pid {child.pid}"):
            app.doctor(repair=True)
        assert app.status()["maintenance_lock"].startswith(f"retrain by pid {child.pid}")
    finally:
        child.kill()
        child.wait()
    app.close()
    system.registry.dispose()
