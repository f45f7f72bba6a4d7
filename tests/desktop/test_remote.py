"""Remote mode against a real ``classifi serve`` process on 127.0.0.1: the same flows as in
local mode (classify, submit, review with the keyboard, audit log, models, retrain with a real
``classifi worker``), and the outbox syncing once a server that was down comes up.

The server serves a copy of the session's trained home plus a second, candidate version; the
desktop has a home of its own (only its outbox lives there).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from PySide6.QtCore import Qt, QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from core.app import App
from core.config import load_settings
from core.errors import AuthError
from core.wire import ModelState
from desktop.admin_window import open_admin_window
from desktop.audit_view import AuditLogView
from desktop.backends import QUEUED, RemoteBackend
from desktop.models_view import open_models_window
from desktop.results import RowState
from desktop.sign_in import PasswordDialog
from tests.desktop.conftest import drop, retrain_now, submit, worker_on
from tests.edge.conftest import LiveServer, PortTaken, copy_home, start_server
from tests.services import free_port

pytestmark = [pytest.mark.gui, pytest.mark.slow]


def prepare_server_home(trained_home: Path, destination: Path) -> Path:
    """A copy of the trained home with a second version (a candidate) trained from the cache."""
    home = copy_home(trained_home, destination)
    settings = load_settings({}, overrides={"home": home, "backbone": "efficientnet_lite0"})
    with App(settings, actor="tests") as app:
        assert not app.train().became_champion
    return home


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, trained_home: Path) -> Iterator[LiveServer]:
    home = prepare_server_home(trained_home, tmp_path_factory.mktemp("remote") / "home")
    live = start_server(home)
    yield live
    live.stop()


def admin_get(server: LiveServer, path: str) -> dict:
    answer = requests.get(
        server.url + path, headers={"Authorization": f"Bearer {server.token}"}, timeout=30
    )
    answer.raise_for_status()
    return answer.json()


def pending_ids(server: LiveServer) -> set[int]:
    return {item["id"] for item in admin_get(server, "/admin/submissions")["submissions"]}


def answer_sign_in_dialog(secrets: list[str]) -> list[str]:
    """Type each secret into the sign-in dialog once it is open, and press OK; the returned
    list fills with what was typed, in order."""
    typed: list[str] = []

    def answer() -> None:
        dialog = QApplication.activeModalWidget()
        if isinstance(dialog, PasswordDialog) and dialog.isVisible():
            if typed and not dialog.error.text():  # the last secret is still being checked
                QTimer.singleShot(50, answer)
                return
            dialog.error.clear()
            dialog.secret.setText(secrets[len(typed)])
            typed.append(secrets[len(typed)])
            dialog.accept()
        if len(typed) < len(secrets):
            QTimer.singleShot(50, answer)

    QTimer.singleShot(50, answer)
    return typed


def test_classify_a_dropped_folder_remotely(
    open_window, settings, qtbot, server, corrupt_folder
) -> None:
    backend = RemoteBackend(settings, server.url)
    window = open_window(settings, backend)
    assert window.mode_label.text() == f"Remote: {server.url}"
    assert window.model_label.text() == "Model v1 · efficientnet_lite0"

    drop(window, [corrupt_folder])
    qtbot.waitUntil(lambda: window.run is not None and not window.run.running, timeout=120_000)
    rows = {row.path.name: row for row in window.results.rows}
    assert rows["broken.jpg"].state == RowState.ERROR
    assert "truncated" in rows["broken.jpg"].error
    for name, row in rows.items():
        if name != "broken.jpg":
            assert row.state == RowState.DONE
            assert row.label == name.split("-")[0]  # the files are named <label>-<photo>
            assert row.model_version == 1

    # Usage goes to the server's Prometheus metrics, labelled client="desktop".
    qtbot.waitUntil(lambda: backend.usage().get("photos_classified", 0) >= 2, timeout=30_000)
    assert backend.usage()["session"] >= 1


def test_submit_then_review_with_the_keyboard_remotely(
    open_window, settings, qtbot, server, unseen_photos
) -> None:
    backend = RemoteBackend(settings, server.url)
    window = open_window(settings, backend)
    photos = unseen_photos["dandelion"][20:22] + unseen_photos["grass"][20:22]
    submitted = [submit(backend, photo, photo.parent.name) for photo in photos]
    assert all(answer.stored and answer.prediction for answer in submitted)
    ids = [answer.photo_id for answer in submitted]
    assert pending_ids(server) >= set(ids)
    again = submit(backend, photos[0], "dandelion")
    assert not again.stored and again.duplicate.photo_id == ids[0]

    with pytest.raises(AuthError):
        backend.sign_in("not the token")
    assert not backend.admin_signed_in
    backend.sign_in(server.token)
    admin = open_admin_window(window)
    qtbot.waitUntil(lambda: {item.id for item in admin.model.items} >= set(ids), timeout=30_000)
    qtbot.waitUntil(lambda: len(admin.model.thumbnails) >= len(ids), timeout=30_000)
    count = admin.model.rowCount()

    grid = admin.grid
    grid.setFocus()
    first = admin.selected_items()[0]
    QTest.keyClick(grid, Qt.Key.Key_2)  # correct to "grass"...
    QTest.keyClick(grid, Qt.Key.Key_A)  # ...and approve
    qtbot.waitUntil(lambda: admin.model.rowCount() == count - 1, timeout=30_000)
    assert first.id not in pending_ids(server)
    second = admin.selected_items()[0]
    QTest.keyClick(grid, Qt.Key.Key_R)
    qtbot.waitUntil(lambda: admin.model.rowCount() == count - 2, timeout=30_000)
    assert second.id not in pending_ids(server)
    QTest.keyClick(grid, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undo the reject
    qtbot.waitUntil(lambda: admin.model.rowCount() == count - 1, timeout=30_000)
    assert second.id in pending_ids(server)

    audit = AuditLogView(backend, admin)
    qtbot.addWidget(audit)
    qtbot.waitUntil(lambda: audit.table.rowCount() >= 3, timeout=30_000)
    newest = [
        (audit.table.item(row, 1).text(), audit.table.item(row, 2).text()) for row in range(3)
    ]
    assert newest == [
        ("edge-admin", "review.undo"),
        ("edge-admin", "review.reject"),
        ("edge-admin", "review.approve"),
    ]
    entries = admin_get(server, "/admin/audit?limit=3")["entries"]
    assert (entries[2]["photo_id"], entries[2]["new_label"]) == (first.id, "grass")


def test_promote_rollback_and_retrain_remotely(
    open_window, settings, qtbot, server, tmp_path
) -> None:
    backend = RemoteBackend(settings, server.url)
    window = open_window(settings, backend)
    # Only admins may list the server's versions: the window asks for the token. A wrong one
    # is refused in the dialog, which stays open for the right one.
    typed = answer_sign_in_dialog(["not the token", server.token])
    models = open_models_window(window)
    qtbot.waitUntil(lambda: models.table.rowCount() == 2, timeout=30_000)
    assert typed == ["not the token", server.token] and backend.admin_signed_in
    assert models.selected().version == 2

    models.promote_button.click()
    qtbot.waitUntil(lambda: admin_get(server, "/models")["models"][0]["state"] == "champion")
    # Every server worker serves it within its refresh interval, with no restart.
    qtbot.waitUntil(lambda: requests.get(f"{server.url}/model", timeout=30).json()["version"] == 2)
    qtbot.waitUntil(lambda: window.model_label.text().startswith("Model v2"), timeout=30_000)
    models.rollback_button.click()
    qtbot.waitUntil(lambda: backend.champion().version == 1, timeout=30_000)
    assert {m.version: m.state for m in backend.versions()}[2] == ModelState.ARCHIVED

    # "Retrain now" queues the job; a real worker on the server's home carries it out.
    with worker_on(server.home, tmp_path / "worker.log"):
        retrain_now(qtbot, models)
    qtbot.waitUntil(lambda: models.table.rowCount() == 3, timeout=30_000)


def test_submissions_wait_while_the_server_is_down_and_sync_when_it_is_up(
    open_window, settings, qtbot, tmp_path, trained_home, unseen_photos
) -> None:
    port = free_port()
    backend = RemoteBackend(settings, f"http://127.0.0.1:{port}")
    window = open_window(settings, backend)
    photos = [unseen_photos["grass"][30], unseen_photos["dandelion"][30]]
    assert [submit(backend, photo, photo.parent.name) for photo in photos] == [QUEUED, QUEUED]
    window.refresh_sync()
    assert window.sync_label.text() == "2 waiting to sync"

    home = copy_home(trained_home, tmp_path / "server" / "home")
    try:
        server = start_server(home, port=port)
    except PortTaken:  # another process took the port meanwhile: the server moves, as a user's
        server = start_server(home)  # would, and the desktop follows it (same outbox)
        backend = RemoteBackend(settings, server.url)
        window.switch_backend(backend)
    try:
        window.sync_now()  # what the window's timer does every 30 s
        qtbot.waitUntil(lambda: backend.waiting_to_sync() == 0, timeout=60_000)
        qtbot.waitUntil(lambda: not window.sync_label.isVisibleTo(window), timeout=10_000)
        pending = admin_get(server, "/admin/submissions")["submissions"]
        assert sorted((item["proposed_label"], item["submitted_by"]) for item in pending) == [
            ("dandelion", "desktop"),
            ("grass", "desktop"),
        ]
    finally:
        server.stop()
    assert submit(backend, photos[0], "grass") == QUEUED  # down again: queued, not lost
    assert backend.waiting_to_sync() == 1
