"""The admin window's "Suspected mislabels" tab on a real home: the audit finds photos filed
under the wrong label, and each fix (relabel, remove from training) reaches the registry and
the audit log."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from core.registry import AuditEntry, Photo, PhotoStatus
from desktop.admin_window import open_admin_window

pytestmark = pytest.mark.gui

PASSWORD = "label audit admin password"


def test_the_audit_tab_finds_misfiled_photos_and_fixes_them(
    open_window, trained_settings, qtbot
) -> None:
    window = open_window(trained_settings)
    backend = window.backend
    registry = backend.api.registry
    with registry.session() as session:
        trained = session.execute(
            select(Photo.id, Photo.label)
            .where(Photo.status == PhotoStatus.TRAINED)
            .order_by(Photo.id)
        ).all()
        misfiled = {
            photo_id: label
            for photo_id, label in (trained[0], trained[-1])  # one of each label
        }
        assert set(misfiled.values()) == {"dandelion", "grass"}
        for photo_id, label in misfiled.items():
            other = "grass" if label == "dandelion" else "dandelion"
            session.execute(update(Photo).where(Photo.id == photo_id).values(label=other))

    backend.choose_admin_password(PASSWORD)
    backend.sign_in(PASSWORD)
    admin = open_admin_window(window)
    assert admin is not None
    tab = admin.mislabels
    admin.tabs.setCurrentWidget(tab)
    tab.audit_button.click()
    assert not tab.audit_button.isEnabled()  # one audit at a time
    qtbot.waitUntil(lambda: tab.audit_button.isEnabled(), timeout=120_000)

    found = {issue.photo_id: issue for issue in tab.issues}
    assert set(misfiled) <= set(found), [issue.photo_id for issue in tab.issues]
    assert tab.table.rowCount() == len(tab.issues)
    scores = [issue.score for issue in tab.issues]
    assert scores == sorted(scores)  # most suspicious first
    for photo_id, label in misfiled.items():
        assert found[photo_id].suggested_label == label

    relabelled, removed = misfiled
    tab.table.selectRow(tab.issues.index(found[relabelled]))
    right_label = misfiled[relabelled]
    button = tab.relabel_buttons[tab.labels.index(right_label)]
    wrong_button = tab.relabel_buttons[tab.labels.index(found[relabelled].label)]
    assert button.isEnabled() and not wrong_button.isEnabled()
    qtbot.waitUntil(lambda: not tab.preview.pixmap().isNull(), timeout=30_000)
    button.click()
    qtbot.waitUntil(lambda: relabelled not in {issue.photo_id for issue in tab.issues})

    tab.table.selectRow(tab.issues.index(found[removed]))
    tab.remove_button.click()
    qtbot.waitUntil(lambda: removed not in {issue.photo_id for issue in tab.issues})
    assert tab.table.rowCount() == len(tab.issues)

    with registry.session() as session:
        fixed = session.get(Photo, relabelled)
        gone = session.get(Photo, removed)
        actions = dict(
            session.execute(
                select(AuditEntry.photo_id, AuditEntry.action).where(
                    AuditEntry.photo_id.in_(misfiled)
                )
            ).all()
        )
    assert fixed is not None and (fixed.label, fixed.status) == (right_label, "trained")
    assert gone is not None and gone.status == "rejected"
    assert actions == {relabelled: "audit.relabel", removed: "audit.remove"}
    admin.close()
