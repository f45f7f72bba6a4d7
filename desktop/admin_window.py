"""The admin relabel window: review pending submissions, keyboard first, and the training
photos whose label looks wrong.

Digits set the label of the selected photos, A approves them (with that label), R rejects
them, S selects the pending photos most similar to the current one (their cached
embeddings), the arrows move, Ctrl+A and Shift-click select for bulk decisions, Ctrl+Z undoes
the last decision (a bulk one as a whole). Every decision is a call of the backend's review
use case, which writes it to the audit log. The "Suspected mislabels" tab is
:mod:`desktop.label_audit_tab`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QItemSelection, QItemSelectionModel, Qt
from PySide6.QtGui import QImage, QKeyEvent, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QListView,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from core.errors import AuthError
from core.imaging import check_photo
from core.wire import PendingPhoto, ReviewAction, ReviewDecision, SimilarPhoto
from desktop.audit_view import AuditLogView
from desktop.backends import Backend
from desktop.classify_run import thumbnail_of
from desktop.label_audit_tab import LabelAuditTab
from desktop.pending_model import ITEM_ROLE, PendingFilter, PendingModel, PendingTile, describe
from desktop.sign_in import sign_in
from desktop.tasks import run_task

#: How many pending photos "Select similar" adds to the current one.
SIMILAR_COUNT = 10


class AdminWindow(QMainWindow):
    """Pending submissions in a grid, a large preview, and the decisions."""

    def __init__(
        self, backend: Backend, labels: tuple[str, ...], parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.backend = backend
        self.labels = labels
        self.decisions: list[list[PendingPhoto]] = []  # decided together, for undo; newest last
        self.busy = False
        self.setWindowTitle("Review submissions")
        self.resize(1100, 700)

        self.model = PendingModel(self)
        self.proxy = PendingFilter(self.model, self)
        self.grid = QListView()
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setUniformItemSizes(True)
        self.grid.setModel(self.proxy)
        self.grid.setItemDelegate(PendingTile(self.model, self.grid))
        self.grid.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.grid.selectionModel().selectionChanged.connect(self._show_preview)

        self.preview = QLabel("Nothing selected")
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumSize(360, 300)
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        keys = "  ".join(f"{n + 1}: {label}" for n, label in enumerate(labels))
        help_text = QLabel(
            f"Keys — {keys}   A: approve   R: reject   S: select similar   arrows: move   "
            "Ctrl+A / Shift-click: select several   Ctrl+Z: undo"
        )
        help_text.setWordWrap(True)

        buttons = QHBoxLayout()
        self.approve_button = QPushButton("Approve (A)")
        self.approve_button.clicked.connect(self.approve_selected)
        self.reject_button = QPushButton("Reject (R)")
        self.reject_button.clicked.connect(self.reject_selected)
        self.undo_button = QPushButton("Undo (Ctrl+Z)")
        self.undo_button.clicked.connect(self.undo)
        self.undo_button.setEnabled(False)
        self.similar_button = QPushButton("Select similar (S)")
        self.similar_button.setToolTip(
            f"Select the {SIMILAR_COUNT} pending photos nearest to the current one as well: "
            "one key then labels them all, one undo restores them all."
        )
        self.similar_button.clicked.connect(self.select_similar)
        self.audit_button = QPushButton("Audit log…")
        self.audit_button.clicked.connect(self.show_audit_log)
        self.disagree_button = QPushButton("Only disagreements")
        self.disagree_button.setCheckable(True)
        self.disagree_button.toggled.connect(self.proxy.set_disagreeing_only)
        for button in (
            self.approve_button,
            self.reject_button,
            self.undo_button,
            self.similar_button,
            self.disagree_button,
            self.audit_button,
        ):
            buttons.addWidget(button)

        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.addWidget(self.preview, 1)
        side_layout.addWidget(self.details)
        side_layout.addLayout(buttons)
        side_layout.addWidget(help_text)

        self.empty = QLabel("Nothing to review: every submission has been decided.")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(self.grid, 1)
        left_layout.addWidget(self.empty)
        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(side)
        splitter.setStretchFactor(0, 1)
        self.mislabels = LabelAuditTab(
            backend, labels, lambda text: self.statusBar().showMessage(text, 10_000)
        )
        self.tabs = QTabWidget()
        self.tabs.addTab(splitter, "Submissions")
        self.tabs.addTab(self.mislabels, "Suspected mislabels")
        self.setCentralWidget(self.tabs)

        QShortcut(QKeySequence.StandardKey.Undo, self, self.undo)
        self.grid.installEventFilter(self)
        self.statusBar()
        self.reload()

    # Keyboard ------------------------------------------------------------------------------
    def eventFilter(self, watched: Any, event: Any) -> bool:
        if (
            watched is self.grid
            and isinstance(event, QKeyEvent)
            and event.type() == QKeyEvent.Type.KeyPress
        ) and self._handle_key(event):
            return True
        return super().eventFilter(watched, event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if not self._handle_key(event):
            super().keyPressEvent(event)

    def _handle_key(self, event: QKeyEvent) -> bool:
        if event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier:
            return False  # Ctrl+A and friends belong to the view
        text = event.text()
        if text.isdigit() and 1 <= int(text) <= len(self.labels):
            self.set_label(self.labels[int(text) - 1])
            return True
        if event.key() == Qt.Key.Key_A:
            self.approve_selected()
            return True
        if event.key() == Qt.Key.Key_R:
            self.reject_selected()
            return True
        if event.key() == Qt.Key.Key_S:
            self.select_similar()
            return True
        return False

    # Loading -------------------------------------------------------------------------------
    def reload(self) -> None:
        self.statusBar().showMessage("Loading pending submissions…")
        run_task(self.backend.pending, self._on_pending, self._on_error)

    def _on_pending(self, items: list[PendingPhoto]) -> None:
        self.model.set_items(items)
        self.statusBar().showMessage(f"{len(items)} pending", 5000)
        self._update_empty()
        if items:
            self.grid.setCurrentIndex(self.proxy.index(0, 0))
        self._load_thumbnails([item.id for item in items if item.id not in self.model.thumbnails])

    def _load_thumbnails(self, ids: list[int]) -> None:
        backend = self.backend

        def load() -> list[tuple[int, QImage]]:
            out = []
            for photo_id in ids:
                data, _ = backend.photo_image(photo_id)
                out.append((photo_id, thumbnail_of(check_photo(data, backend.settings).image, 360)))
            return out

        if ids:
            run_task(load, self._on_thumbnails, self._on_error)

    def _on_thumbnails(self, thumbnails: list[tuple[int, QImage]]) -> None:
        for photo_id, image in thumbnails:
            self.model.set_thumbnail(photo_id, image)
        self._show_preview()

    def _update_empty(self) -> None:
        self.empty.setVisible(self.model.rowCount() == 0)

    # Selection and preview -----------------------------------------------------------------
    def selected_items(self) -> list[PendingPhoto]:
        indexes = sorted(self.grid.selectionModel().selectedIndexes(), key=lambda i: i.row())
        return [index.data(ITEM_ROLE) for index in indexes]

    def _show_preview(self, *_args: object) -> None:
        items = self.selected_items()
        if not items:
            self.preview.setPixmap(QPixmap())
            self.preview.setText("Nothing selected")
            self.details.clear()
            return
        item = items[0]
        pixmap = self.model.thumbnails.get(item.id)
        if pixmap is not None:
            self.preview.setPixmap(
                pixmap.scaled(
                    self.preview.size(),
                    Qt.AspectRatioMode.KeepAspectRatio,
                    Qt.TransformationMode.SmoothTransformation,
                )
            )
        text = describe(item)
        if item.id in self.model.chosen:
            text += f"\nWill be approved as: {self.model.chosen[item.id]}"
        if len(items) > 1:
            text += f"\n\n{len(items)} selected: A, R and the digits act on all of them."
        self.details.setText(text)

    def select_similar(self) -> None:
        """Add the pending photos nearest to the current one to the selection."""
        current = self.grid.currentIndex()
        if not current.isValid() or self.busy:
            return
        item: PendingPhoto = current.data(ITEM_ROLE)
        self.statusBar().showMessage(f"Finding the photos most like #{item.id}…")
        run_task(
            lambda: self.backend.similar_pending(item.id, SIMILAR_COUNT),
            lambda found: self._on_similar(item, found),
            self._on_error,
        )

    def _on_similar(self, item: PendingPhoto, found: list[SimilarPhoto]) -> None:
        wanted = {item.id, *(photo.photo_id for photo in found)}
        selection = QItemSelection()
        for row in range(self.proxy.rowCount()):
            index = self.proxy.index(row, 0)
            if index.data(ITEM_ROLE).id in wanted:
                selection.select(index, index)
        self.grid.selectionModel().select(selection, QItemSelectionModel.SelectionFlag.Select)
        self.statusBar().showMessage(
            f"Selected #{item.id} and the {len(found)} pending photos most like it: a digit "
            "labels them all, A approves, Ctrl+Z undoes it all",
            10_000,
        )

    # Decisions -----------------------------------------------------------------------------
    def set_label(self, label: str) -> None:
        items = self.selected_items()
        self.model.choose([item.id for item in items], label)
        self._show_preview()

    def approve_selected(self) -> None:
        items = self.selected_items()
        by_label: dict[str | None, list[int]] = {}
        for item in items:
            by_label.setdefault(self.model.label_for(item), []).append(item.id)
        self._decide(
            items,
            lambda: [
                decision
                for label, ids in by_label.items()
                for decision in self.backend.review(ids, ReviewAction.APPROVE, label)
            ],
        )

    def reject_selected(self) -> None:
        items = self.selected_items()
        ids = [item.id for item in items]
        self._decide(items, lambda: self.backend.review(ids, ReviewAction.REJECT))

    def _decide(self, items: list[PendingPhoto], call: Callable[[], list[ReviewDecision]]) -> None:
        if not items or self.busy:
            return
        self.busy = True
        next_row = self._row_after(items)
        run_task(
            call, lambda decisions: self._on_decided(items, decisions, next_row), self._on_error
        )

    def _row_after(self, items: list[PendingPhoto]) -> int:
        rows = [index.row() for index in self.grid.selectionModel().selectedIndexes()]
        return max(rows) + 1 - len(items) if rows else 0

    def _on_decided(
        self, items: list[PendingPhoto], decisions: list[ReviewDecision], next_row: int
    ) -> None:
        self.busy = False
        self.decisions.append(items)
        self.undo_button.setEnabled(True)
        self.model.remove({item.id for item in items})
        self._update_empty()
        if self.proxy.rowCount():
            self.grid.setCurrentIndex(self.proxy.index(min(next_row, self.proxy.rowCount() - 1), 0))
        action = "Approved" if decisions[0].action.endswith("approve") else "Rejected"
        self.statusBar().showMessage(f"{action} {len(items)}: undo with Ctrl+Z", 5000)
        backend = self.backend
        run_task(lambda: backend.record_usage("reviews", len(items)), lambda _: None)

    def undo(self) -> None:
        if not self.decisions or self.busy:
            return
        self.busy = True
        items = self.decisions.pop()
        self.undo_button.setEnabled(bool(self.decisions))
        run_task(
            lambda: self.backend.undo(len(items)),
            lambda _: self._on_undone(items),
            self._on_error,
        )

    def _on_undone(self, items: list[PendingPhoto]) -> None:
        self.busy = False
        self.model.insert(items)
        self._update_empty()
        self.grid.setCurrentIndex(self.proxy.index(0, 0))
        self._show_preview()
        self.statusBar().showMessage(f"Undone: {len(items)} back to pending", 5000)

    def _on_error(self, error: BaseException) -> None:
        self.busy = False
        self.statusBar().showMessage(str(error), 15_000)
        if isinstance(error, AuthError):
            QMessageBox.warning(self, "Not allowed", str(error))

    # Audit log -----------------------------------------------------------------------------
    def show_audit_log(self) -> None:
        self.audit = AuditLogView(self.backend, self)
        self.audit.show()


def open_admin_window(main: Any) -> AdminWindow | None:
    """Sign in if needed, then open (or raise) the review window of ``main``."""
    if not sign_in(main.backend, main):
        return None
    window = getattr(main, "admin_window", None)
    if window is None or window.backend is not main.backend:
        window = AdminWindow(main.backend, main.settings.labels, main)
        main.admin_window = window
    window.show()
    window.raise_()
    return window
