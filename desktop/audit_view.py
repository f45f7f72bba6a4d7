"""The audit log: who decided what, and when, newest first."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.wire import AuditRecord
from desktop.backends import Backend
from desktop.tasks import run_task


class AuditLogView(QDialog):
    """The newest decisions first: when, who, what, which photo, old and new label."""

    COLUMNS = ("When", "Who", "Action", "Photo", "Old label", "New label")

    def __init__(self, backend: Backend, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Audit log")
        self.resize(760, 420)
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(list(self.COLUMNS))
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        run_task(
            backend.audit_log, self._fill, lambda error: self.setWindowTitle(f"Audit log: {error}")
        )

    def _fill(self, entries: list[AuditRecord]) -> None:
        self.table.setRowCount(len(entries))
        for row, entry in enumerate(entries):
            values = (
                entry.at.isoformat(timespec="seconds"),
                entry.actor,
                entry.action,
                entry.photo_id or entry.model_version_id or "",
                entry.old_label or "",
                entry.new_label or "",
            )
            for column, value in enumerate(values):
                self.table.setItem(row, column, QTableWidgetItem(str(value)))
