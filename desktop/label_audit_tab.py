"""The admin window's "Suspected mislabels" tab: the training photos whose label looks wrong
(the backend's label audit, most suspicious first), each relabelled or removed from training
with one click; every decision goes to the audit log."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.imaging import check_photo
from core.wire import LabelIssue, ReviewDecision
from desktop.backends import Backend
from desktop.classify_run import thumbnail_of
from desktop.tasks import run_task

COLUMNS = ("Photo", "Label", "Suggested", "Score", "Source")


class LabelAuditTab(QWidget):
    """The suspected mislabels, a preview of the selected one, and its two fixes."""

    def __init__(
        self, backend: Backend, labels: tuple[str, ...], report: Callable[[str], None]
    ) -> None:
        super().__init__()
        self.backend = backend
        self.labels = labels
        self.report = report  # shows a line in the window's status bar
        self.issues: list[LabelIssue] = []
        self.busy = False

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.itemSelectionChanged.connect(self._show_selected)

        self.preview = QLabel("Run the audit to find photos whose label looks wrong.")
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumSize(320, 260)
        self.preview.setWordWrap(True)
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.audit_button = QPushButton("Run the audit")
        self.audit_button.clicked.connect(self.run_audit)
        self.relabel_buttons = []
        fixes = QHBoxLayout()
        for label in labels:
            button = QPushButton(f"Relabel as {label}")
            button.clicked.connect(lambda _=False, label=label: self.relabel(label))
            self.relabel_buttons.append(button)
            fixes.addWidget(button)
        self.remove_button = QPushButton("Remove from training")
        self.remove_button.clicked.connect(self.remove)
        fixes.addWidget(self.remove_button)

        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.addWidget(self.preview, 1)
        side_layout.addWidget(self.details)
        side_layout.addLayout(fixes)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(self.table, 1)
        left_layout.addWidget(self.audit_button)
        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(side)
        splitter.setStretchFactor(0, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)
        self._enable_fixes()

    def selected(self) -> LabelIssue | None:
        rows = self.table.selectionModel().selectedRows()
        return self.issues[rows[0].row()] if rows else None

    def _enable_fixes(self) -> None:
        issue = self.selected()
        for label, button in zip(self.labels, self.relabel_buttons, strict=True):
            button.setEnabled(issue is not None and not self.busy and label != issue.label)
        self.remove_button.setEnabled(issue is not None and not self.busy)

    # The audit -----------------------------------------------------------------------------
    def run_audit(self) -> None:
        self.audit_button.setEnabled(False)
        self.report("Auditing the training labels (a few seconds per fold)…")
        run_task(self.backend.audit_labels, self._on_issues, self._on_error)

    def _on_issues(self, issues: list[LabelIssue]) -> None:
        self.audit_button.setEnabled(True)
        self.issues = issues
        self.table.setRowCount(len(issues))
        for row, issue in enumerate(issues):
            values = (
                f"#{issue.photo_id}",
                issue.label,
                issue.suggested_label,
                f"{issue.score:.3f}",
                issue.url_source,
            )
            for column, value in enumerate(values):
                self.table.setItem(row, column, QTableWidgetItem(value))
        self.report(f"{len(issues)} suspected mislabel(s), most suspicious first")
        if issues:
            self.table.selectRow(0)
        else:
            self.preview.setText("No suspected mislabels: the labels agree with the model.")

    def _show_selected(self) -> None:
        self._enable_fixes()
        issue = self.selected()
        if issue is None:
            return
        self.details.setText(
            f"Photo #{issue.photo_id}, trained as {issue.label}; the model says "
            f"{issue.suggested_label} (label quality {issue.score:.3f}).\n{issue.url_source}"
        )
        backend = self.backend

        def load() -> QImage:
            data, _ = backend.photo_image(issue.photo_id)
            return thumbnail_of(check_photo(data, backend.settings).image, 480)

        run_task(load, lambda image: self._on_image(issue, image), self._on_error)

    def _on_image(self, issue: LabelIssue, image: QImage) -> None:
        if self.selected() is not issue:
            return  # another row was chosen meanwhile
        self.preview.setPixmap(
            QPixmap.fromImage(image).scaled(
                self.preview.size(),
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        )

    # Fixes ---------------------------------------------------------------------------------
    def relabel(self, label: str) -> None:
        issue = self.selected()
        if issue is not None:
            self._fix(issue, lambda: self.backend.relabel(issue.photo_id, label))

    def remove(self) -> None:
        issue = self.selected()
        if issue is not None:
            self._fix(issue, lambda: self.backend.remove_from_training(issue.photo_id))

    def _fix(self, issue: LabelIssue, call: Callable[[], ReviewDecision]) -> None:
        if self.busy:
            return
        self.busy = True
        self._enable_fixes()
        run_task(call, lambda decision: self._on_fixed(issue, decision), self._on_error)

    def _on_fixed(self, issue: LabelIssue, decision: ReviewDecision) -> None:
        self.busy = False
        row = self.issues.index(issue)
        del self.issues[row]
        self.table.removeRow(row)
        done = (
            f"relabelled as {decision.new_label}" if decision.new_label else "removed from training"
        )
        self.report(f"Photo #{issue.photo_id} {done} (in the audit log); the next training uses it")
        self._enable_fixes()

    def _on_error(self, error: BaseException) -> None:
        self.busy = False
        self.audit_button.setEnabled(True)
        self._enable_fixes()
        self.report(str(error))
