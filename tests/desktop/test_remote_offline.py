"""Remote mode with the server down: a submission waits in the outbox, nothing is lost.

The server is "down" for real: the URL points at a 127.0.0.1 port nothing listens on.
"""

from __future__ import annotations

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from core.errors import ServerUnreachable
from desktop.backends import QUEUED, RemoteBackend
from desktop.sign_in import PasswordDialog, sign_in
from tests.desktop.conftest import submit
from tests.services import free_port

pytestmark = pytest.mark.gui


def test_submissions_queue_while_the_server_is_down(
    open_window, settings, qtbot, dataset_photos
) -> None:
    backend = RemoteBackend(settings, f"http://127.0.0.1:{free_port()}")
    window = open_window(settings, backend)
    assert window.mode_label.text().startswith("Remote: http://127.0.0.1:")
    assert window.model_label.text() == "Model: unavailable"

    photos = [dataset_photos["grass"][0], dataset_photos["dandelion"][0]]
    assert submit(backend, photos[0], "grass") == QUEUED
    assert submit(backend, photos[1], "dandelion") == QUEUED
    assert submit(backend, photos[1], "dandelion") == QUEUED  # the same one is queued once
    window.refresh_sync()
    assert window.sync_label.text() == "2 waiting to sync"

    # A restart keeps them: the outbox is on disk, the photos' bytes with it.
    again = RemoteBackend(settings, backend.url)
    entries = again.outbox.entries()
    assert [(entry.filename, entry.label) for entry in entries] == [
        (photos[0].name, "grass"),
        (photos[1].name, "dandelion"),
    ]
    assert again.outbox.photo(entries[0]) == photos[0].read_bytes()
    assert again.sync() == 0  # still down: nothing sent, nothing dropped
    assert len(again.outbox) == 2
    with pytest.raises(ServerUnreachable, match="does not answer"):
        again.record_usage("session")


def test_sign_in_says_when_the_server_does_not_answer(open_window, settings) -> None:
    backend = RemoteBackend(settings, f"http://127.0.0.1:{free_port()}")
    window = open_window(settings, backend)
    shown: list[str] = []

    def answer() -> None:
        """Type a token once; when the dialog comes back with an error, read it and cancel."""
        dialog = QApplication.activeModalWidget()
        if isinstance(dialog, PasswordDialog) and dialog.isVisible():
            if not shown:
                shown.append("")
                dialog.secret.setText("a-token")
                dialog.accept()
            elif dialog.error.text():
                shown.append(dialog.error.text())
                dialog.reject()
                return
        QTimer.singleShot(50, answer)

    QTimer.singleShot(50, answer)
    assert not sign_in(backend, window)  # the check ran off the GUI thread; no exception
    assert "does not answer" in shown[-1] and not backend.admin_signed_in
