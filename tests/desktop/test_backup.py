"""File > Back up data… and Restore data…: a backup taken while the app runs, the home
destroyed, the backup restored from the menu, and every photo, model and audit entry back.

The folder dialogs and the confirmation are native windows a test cannot click: they are
replaced by their answers (monkeypatch); everything behind them is real."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtWidgets import QFileDialog, QMessageBox

from desktop.backends import LocalBackend

pytestmark = pytest.mark.gui


def test_back_up_then_restore_from_the_file_menu(
    open_window, trained_settings, qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = open_window(trained_settings)
    backend = window.backend
    assert isinstance(backend, LocalBackend)
    backend.choose_admin_password("admin password")
    backend.sign_in("admin password")
    photos, models = backend.api.status()["photos"], backend.versions()
    audit = backend.audit_log()
    assert window.backup_action.isEnabled() and window.restore_action.isEnabled()

    backups = tmp_path / "backups"
    backups.mkdir()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *_: str(backups))
    window.backup_action.trigger()
    qtbot.waitUntil(lambda: "Backed up" in window.statusBar().currentMessage(), timeout=60_000)
    (backup,) = backups.iterdir()
    assert f"to {backup}" in window.statusBar().currentMessage()

    backend.api.close()
    shutil.rmtree(trained_settings.home)  # the computer's data is lost
    trained_settings.home.mkdir()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *_: str(backup))
    monkeypatch.setattr(QMessageBox, "question", lambda *_: QMessageBox.StandardButton.Yes)
    window.restore_action.trigger()
    qtbot.waitUntil(lambda: "Restored" in window.statusBar().currentMessage(), timeout=60_000)

    restored = window.backend
    assert restored is not backend and isinstance(restored, LocalBackend)
    restored.sign_in("admin password")  # the password came back with the registry
    assert restored.api.status()["photos"] == photos
    assert [v.version for v in restored.versions()] == [v.version for v in models]
    assert [(e.action, e.photo_id) for e in restored.audit_log()][-len(audit) :] == [
        (e.action, e.photo_id) for e in audit
    ]
    assert window.model_label.text().startswith("Model v1")


def test_a_folder_that_is_no_backup_is_refused_and_nothing_changes(
    open_window, trained_settings, qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = open_window(trained_settings)
    backend = window.backend
    backend.choose_admin_password("admin password")
    backend.sign_in("admin password")
    photos = backend.api.status()["photos"]
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *_: str(tmp_path))
    monkeypatch.setattr(QMessageBox, "question", lambda *_: QMessageBox.StandardButton.Yes)
    window.restore_action.trigger()
    qtbot.waitUntil(lambda: "failed" in window.statusBar().currentMessage(), timeout=60_000)
    assert "is not a ClassifiImage backup" in window.statusBar().currentMessage()
    assert not list(trained_settings.home.parent.glob("*.replaced-*"))  # nothing moved aside
    assert window.backend.api.status()["photos"] == photos  # the app goes on, on its data
