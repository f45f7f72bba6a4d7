"""File > Back up data… and Restore data…: the home's backup and restore (local mode).

The backup runs on a pool thread while the app goes on (SQLite's online backup). A restore
needs the admin, keeps the current data beside the restored one and reopens the app on it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QFileDialog, QMessageBox

from desktop.backends import LocalBackend, open_backend
from desktop.sign_in import sign_in
from desktop.tasks import run_task

if TYPE_CHECKING:
    from desktop.main_window import MainWindow

log = logging.getLogger(__name__)


def back_up(main: MainWindow) -> None:
    """Ask where, then write ``classifimage-backup-<time>`` there in the background."""
    backend = main.backend
    assert isinstance(backend, LocalBackend)  # the action is enabled in local mode only
    parent = QFileDialog.getExistingDirectory(main, "Back up into this folder", str(Path.home()))
    if not parent:
        return
    destination = Path(parent) / f"classifimage-backup-{datetime.now():%Y%m%d-%H%M%S}"
    main.statusBar().showMessage(f"Backing up to {destination}…")
    run_task(
        lambda: backend.api.backup(destination),
        lambda report: main.statusBar().showMessage(
            f"Backed up {report.photos} photos and {report.models} models to {destination}."
        ),
        _failed(main, "The backup"),
    )


def restore(main: MainWindow) -> None:
    """Ask for a backup folder and the admin, then put it back as this computer's data."""
    backend = main.backend
    assert isinstance(backend, LocalBackend)
    source = QFileDialog.getExistingDirectory(main, "Choose a backup folder", str(Path.home()))
    if not source or not sign_in(backend, main):
        return
    answer = QMessageBox.question(
        main,
        "Restore data",
        f"Replace this computer's data with the backup in {source}?\n\nThe current data is "
        f"kept beside it ({backend.settings.home}.replaced-<time>), never deleted.",
    )
    if answer != QMessageBox.StandardButton.Yes:
        return
    main.statusBar().showMessage(f"Restoring {source}…")

    def restored(_manifest: object) -> None:
        # A new backend: the old one's loaded model and sign-in belong to the data set aside.
        main.results.clear()
        main.switch_backend(open_backend(main.settings, main.prefs))
        main.statusBar().showMessage(f"Restored the backup in {source}.")

    # A refused restore leaves the data as it was; the app reopens its stores on next use.
    run_task(
        lambda: backend.api.restore(Path(source), replace=True),
        restored,
        _failed(main, "The restore"),
    )


def _failed(main: MainWindow, what: str) -> Callable[[BaseException], None]:
    def show(error: BaseException) -> None:
        log.error("%s failed", what, exc_info=error)
        main.statusBar().showMessage(f"{what} failed: {error}")

    return show
