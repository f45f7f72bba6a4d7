"""Submit from the main window; review in the admin window with the keyboard; the audit log."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageOps
from PySide6.QtCore import QItemSelectionModel, Qt
from PySide6.QtTest import QTest

from core.errors import AuthError
from core.registry import Photo, PhotoStatus
from desktop.admin_window import SIMILAR_COUNT, open_admin_window
from desktop.audit_view import AuditLogView
from desktop.backends import LocalBackend
from desktop.pending_model import ITEM_ROLE
from tests.desktop.conftest import drop, submit

pytestmark = pytest.mark.gui

PASSWORD = "correct horse battery"


def classify(qtbot, window, photos) -> None:
    drop(window, photos)
    qtbot.waitUntil(lambda: window.run is not None and not window.run.running, timeout=120_000)


def select_row(window, path) -> None:
    for position in range(window.proxy.rowCount()):
        index = window.proxy.index(position, 0)
        if index.data(Qt.ItemDataRole.UserRole + 2).path == path:
            window.grid.selectionModel().select(
                index, QItemSelectionModel.SelectionFlag.ClearAndSelect
            )
            return
    raise AssertionError(f"{path} is not shown")


def test_submit_with_label_from_the_main_window(
    open_window, trained_settings, qtbot, unseen_photos, dataset_photos
) -> None:
    window = open_window(trained_settings)
    new_photo, known_photo = unseen_photos["grass"][0], dataset_photos["dandelion"][0]
    classify(qtbot, window, [new_photo, known_photo])

    select_row(window, new_photo)
    panel = window.submit_panel
    assert panel.submit_button.isEnabled()
    panel.label_box.setCurrentText("dandelion")  # choose another label than the prediction
    panel.submit_button.click()
    qtbot.waitUntil(lambda: panel.answer.text().startswith("Submitted as #"), timeout=60_000)
    row = next(row for row in window.results.rows if row.path == new_photo)
    assert row.submitted == panel.answer.text()

    select_row(window, known_photo)  # it is in the training set: an exact duplicate
    panel.submit_button.click()
    qtbot.waitUntil(lambda: panel.answer.text().startswith("Already known"), timeout=60_000)
    assert "(trained)" in panel.answer.text()

    backend = window.backend
    assert isinstance(backend, LocalBackend)
    with backend.api.registry.session() as session:
        pending = session.query(Photo).filter(Photo.status == PhotoStatus.PENDING).all()
        assert [(p.proposed_label, p.predicted_label) for p in pending] == [
            ("dandelion", row.label)
        ]
    qtbot.waitUntil(lambda: backend.usage().get("submissions") == 2)
    assert backend.usage()["session"] == 1
    assert backend.usage()["photos_classified"] == 2


@pytest.fixture
def admin(open_window, trained_settings, qtbot, unseen_photos):
    """A main window with five pending submissions and the admin window open."""
    window = open_window(trained_settings)
    backend = window.backend
    photos = unseen_photos["dandelion"][10:13] + unseen_photos["grass"][10:12]
    for photo in photos:
        submit(backend, photo, photo.parent.name)
    assert backend.needs_admin_password_choice()
    with pytest.raises(AuthError):
        backend.choose_admin_password("short")
    backend.choose_admin_password(PASSWORD)
    assert not backend.needs_admin_password_choice()
    with pytest.raises(AuthError):
        backend.sign_in("wrong password")
    assert not backend.admin_signed_in
    backend.sign_in(PASSWORD)
    admin_window = open_admin_window(window)
    qtbot.waitUntil(lambda: admin_window.model.rowCount() == len(photos), timeout=30_000)
    qtbot.waitUntil(lambda: len(admin_window.model.thumbnails) == len(photos), timeout=30_000)
    return admin_window


def statuses(backend) -> dict[int, tuple[str, str | None]]:
    with backend.api.registry.session() as session:
        return {
            photo.id: (str(photo.status), photo.label)
            for photo in session.query(Photo).filter(Photo.submitted_by.is_not(None))
        }


def test_review_with_the_keyboard(admin, qtbot) -> None:
    backend, grid = admin.backend, admin.grid
    grid.setFocus()
    first = admin.selected_items()[0]

    QTest.keyClick(grid, Qt.Key.Key_2)  # set the label to "grass"...
    assert admin.model.label_for(first) == "grass"
    QTest.keyClick(grid, Qt.Key.Key_A)  # ...and approve: a correction
    qtbot.waitUntil(lambda: admin.model.rowCount() == 4)
    assert statuses(backend)[first.id] == ("validated", "grass")

    second = admin.selected_items()[0]  # the selection moved on by itself
    QTest.keyClick(grid, Qt.Key.Key_R)
    qtbot.waitUntil(lambda: admin.model.rowCount() == 3)
    assert statuses(backend)[second.id][0] == "rejected"

    QTest.keyClick(grid, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undo the reject
    qtbot.waitUntil(lambda: admin.model.rowCount() == 4)
    assert statuses(backend)[second.id][0] == "pending"

    QTest.keyClick(grid, Qt.Key.Key_Down)  # the arrows move
    assert admin.selected_items()[0].id != second.id

    QTest.keyClick(grid, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)  # select all: bulk
    assert len(admin.selected_items()) == 4
    bulk = [item.id for item in admin.selected_items()]
    QTest.keyClick(grid, Qt.Key.Key_A)
    qtbot.waitUntil(lambda: admin.model.rowCount() == 0)
    assert admin.empty.isVisibleTo(admin)
    after = statuses(backend)
    assert all(after[photo_id][0] == "validated" for photo_id in bulk)

    QTest.keyClick(grid, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undo the bulk
    qtbot.waitUntil(lambda: admin.model.rowCount() == 4)
    assert all(statuses(backend)[photo_id][0] == "pending" for photo_id in bulk)

    audit = AuditLogView(backend, admin)
    qtbot.addWidget(audit)
    qtbot.waitUntil(lambda: audit.table.rowCount() > 0)
    actions = [audit.table.item(row, 2).text() for row in range(audit.table.rowCount())]
    assert actions.count("review.approve") == 5
    assert actions.count("review.reject") == 1
    assert actions.count("review.undo") == 5
    assert {audit.table.item(row, 1).text() for row in range(len(actions))} >= {"desktop-admin"}


def test_select_similar_then_one_key_labels_all_and_one_undo_restores_all(
    open_window, trained_settings, qtbot, unseen_photos
) -> None:
    window = open_window(trained_settings)
    backend = window.backend
    photos = unseen_photos["dandelion"][20:28] + unseen_photos["grass"][20:28]
    submitted = [submit(backend, photo, photo.parent.name) for photo in photos]
    mirrored = io.BytesIO()
    with Image.open(photos[0]) as original:
        ImageOps.mirror(original.convert("RGB")).save(mirrored, format="JPEG", quality=90)
    mirror = backend.submit(mirrored.getvalue(), "dandelion", source="mirror.jpg")
    backend.choose_admin_password(PASSWORD)
    backend.sign_in(PASSWORD)
    admin = open_admin_window(window)
    total = len(photos) + 1
    assert total > SIMILAR_COUNT + 1  # so that "similar" is a real choice
    qtbot.waitUntil(lambda: admin.model.rowCount() == total, timeout=30_000)

    grid = admin.grid
    anchor = next(
        admin.proxy.index(row, 0)
        for row in range(admin.proxy.rowCount())
        if admin.proxy.index(row, 0).data(ITEM_ROLE).id == submitted[0].photo_id
    )
    grid.selectionModel().setCurrentIndex(anchor, QItemSelectionModel.SelectionFlag.ClearAndSelect)
    grid.setFocus()
    QTest.keyClick(grid, Qt.Key.Key_S)
    qtbot.waitUntil(lambda: len(admin.selected_items()) == SIMILAR_COUNT + 1, timeout=30_000)
    chosen = [item.id for item in admin.selected_items()]
    assert mirror.photo_id in chosen

    QTest.keyClick(grid, Qt.Key.Key_2)  # one key labels them all "grass"...
    QTest.keyClick(grid, Qt.Key.Key_A)  # ...and approves them
    qtbot.waitUntil(lambda: admin.model.rowCount() == total - len(chosen))
    after = statuses(backend)
    assert all(after[photo_id] == ("validated", "grass") for photo_id in chosen)

    QTest.keyClick(grid, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # one undo
    qtbot.waitUntil(lambda: admin.model.rowCount() == total)
    assert all(statuses(backend)[photo_id][0] == "pending" for photo_id in chosen)
    admin.close()
