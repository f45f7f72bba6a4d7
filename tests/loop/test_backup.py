"""Backups of a home: taken while submissions and reviews go on, restored into a destroyed
home, with every photo, model and audit entry found again and the doctor finding all clean."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from core.app import App
from core.errors import Conflict, SourceError
from core.registry import AuditEntry, ModelVersion, Photo
from core.wire import ReviewAction
from tests.installation import System, offline_settings
from tests.loop.conftest import folder_label

pytestmark = pytest.mark.slow
CLASSIFI = Path(sys.executable).with_name("classifi")


def snapshot(system: System) -> tuple[set[tuple[str, str, str]], set[str], int]:
    with system.registry.session() as session:
        photos = {
            (photo.sha256, str(photo.status), photo.object_key)
            for photo in session.scalars(select(Photo))
        }
        models = {version.artifact_sha256 for version in session.scalars(select(ModelVersion))}
        audit = len(session.scalars(select(AuditEntry)).all())
    return photos, models, audit


def test_backup_destroy_restore_finds_everything_again(
    make_system, fresh_photos: dict[str, list[Path]], tmp_path: Path
) -> None:
    system: System = make_system()
    app = App(system.settings, actor="admin")
    submitted = [
        app.submit(path.read_bytes(), folder_label(path), source=str(path))
        for path in fresh_photos["grass"][:4]
    ]
    app.review([submitted[0].photo_id], ReviewAction.APPROVE)
    app.review([submitted[1].photo_id], ReviewAction.REJECT)
    before = snapshot(system)

    report = app.backup(tmp_path / "backup")
    assert report.repaired == [] and report.photos == len(before[0])
    with pytest.raises(Conflict, match="exists already"):
        app.backup(tmp_path / "backup")

    app.close()
    system.registry.dispose()
    shutil.rmtree(system.settings.home)
    App(system.settings, actor="admin").restore(tmp_path / "backup")

    restored = System.open(system.settings.home)
    assert snapshot(restored) == before
    with App(restored.settings, actor="admin") as again:
        assert again.doctor().clean
        photo = fresh_photos["dandelion"][0].read_bytes()
        assert again.classify([photo])[0].model_version == again.champion().version
        with pytest.raises(Conflict, match="holds data"):
            again.restore(tmp_path / "backup")
    restored.registry.dispose()


def test_a_backup_taken_during_reviews_is_consistent(
    make_system, fresh_photos: dict[str, list[Path]], tmp_path: Path
) -> None:
    system: System = make_system()
    app = App(system.settings, actor="admin")
    busy = threading.Event()
    errors: list[BaseException] = []

    def reviewer() -> None:
        try:
            for path in fresh_photos["dandelion"][:12]:
                submission = app.submit(path.read_bytes(), "dandelion", source=str(path))
                app.review([submission.photo_id], ReviewAction.APPROVE)
                busy.set()
        except BaseException as exc:  # the thread's boundary: reported below
            errors.append(exc)
            busy.set()

    thread = threading.Thread(target=reviewer)
    thread.start()
    busy.wait(60)
    report = app.backup(tmp_path / "backup")
    thread.join()
    assert errors == []

    # Restored into another home: rows and objects are matched by key, so the copy's own
    # consistency does not depend on where it lives.
    restored_settings = offline_settings(tmp_path / "copy-home")
    with App(restored_settings, actor="admin") as restored:
        restored.restore(tmp_path / "backup")
        assert restored.doctor().clean
        assert restored.status()["photos"]["total"] == report.photos


def test_restore_refuses_what_is_not_a_backup(tmp_path: Path, settings) -> None:
    (tmp_path / "junk").mkdir()
    with pytest.raises(SourceError, match="not a ClassifiImage backup"):
        App(settings, actor="admin").restore(tmp_path / "junk")


def test_the_command_line_backs_up_and_restores(make_system, tmp_path: Path) -> None:
    system: System = make_system()
    system.registry.dispose()
    home = str(system.settings.home)

    def classifi(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CLASSIFI), "--home", home, *args], capture_output=True, text=True, timeout=300
        )

    made = classifi("backup", str(tmp_path / "saved"), "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["photos"] == 120
    refused = classifi("restore", str(tmp_path / "saved"))
    assert refused.returncode == 1 and "holds data" in refused.stderr
    replaced = classifi("restore", str(tmp_path / "saved"), "--replace")
    assert replaced.returncode == 0, replaced.stderr
    assert "120 photos" in replaced.stdout
    assert len(list(Path(home).parent.glob(f"{Path(home).name}.replaced-*"))) == 1
    status = classifi("status", "--json")
    assert json.loads(status.stdout)["photos"]["total"] == 120
