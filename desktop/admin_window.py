"""The admin relabel window: review pending submissions, keyboard first.

Digits set the label of the selected photos, A approves them (with that label), R rejects
them, the arrows move, Ctrl+A and Shift-click select for bulk decisions, Ctrl+Z undoes the
last decision. Every decision is a call of the core review service (or the edge server's
admin routes), which writes it to the audit log.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    QSize,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import (
    QColor,
    QImage,
    QKeyEvent,
    QKeySequence,
    QPainter,
    QPalette,
    QPixmap,
    QShortcut,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListView,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QSplitter,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.errors import AuthError, ClassifiError
from core.loop.review import PendingPhoto, ReviewDecision
from desktop.backends import Backend
from desktop.classify_run import thumbnail_of
from desktop.results import refilter
from desktop.tasks import run_task, wait_for

AnyIndex = QModelIndex | QPersistentModelIndex
ITEM_ROLE = Qt.ItemDataRole.UserRole + 1
TILE = QSize(150, 170)


class PendingModel(QAbstractTableModel):
    """The pending submissions, most useful first (the order the review service gives)."""

    def __init__(self) -> None:
        super().__init__()
        self.items: list[PendingPhoto] = []
        self.thumbnails: dict[int, QPixmap] = {}
        self.chosen: dict[int, str] = {}  # labels set with the digit keys, not yet decided

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.items)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else 1

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        item = self.items[index.row()]
        if role == ITEM_ROLE:
            return item
        if role == Qt.ItemDataRole.DisplayRole:
            return f"#{item.id} {self.label_for(item)}"
        if role == Qt.ItemDataRole.DecorationRole:
            return self.thumbnails.get(item.id)
        if role == Qt.ItemDataRole.ToolTipRole:
            return describe(item)
        return None

    def label_for(self, item: PendingPhoto) -> str:
        return self.chosen.get(item.id, item.proposed_label)

    def set_items(self, items: list[PendingPhoto]) -> None:
        self.beginResetModel()
        self.items = items
        known = {item.id for item in items}
        self.chosen = {key: value for key, value in self.chosen.items() if key in known}
        self.endResetModel()

    def set_thumbnail(self, photo_id: int, image: QImage) -> None:
        self.thumbnails[photo_id] = QPixmap.fromImage(image)
        for position, item in enumerate(self.items):
            if item.id == photo_id:
                self.dataChanged.emit(self.index(position, 0), self.index(position, 0))

    def choose(self, ids: list[int], label: str) -> None:
        for photo_id in ids:
            self.chosen[photo_id] = label
        self.dataChanged.emit(self.index(0, 0), self.index(len(self.items) - 1, 0))

    def remove(self, ids: set[int]) -> None:
        for position in reversed(range(len(self.items))):
            if self.items[position].id in ids:
                self.beginRemoveRows(QModelIndex(), position, position)
                del self.items[position]
                self.endRemoveRows()

    def insert(self, items: list[PendingPhoto]) -> None:
        """Put undone items back at the top, where the reviewer was looking."""
        self.beginInsertRows(QModelIndex(), 0, len(items) - 1)
        self.items[0:0] = items
        self.endInsertRows()


class PendingFilter(QSortFilterProxyModel):
    """All pending photos, or only those whose proposed label disagrees with the model."""

    def __init__(self, source: PendingModel) -> None:
        super().__init__()
        self.setSourceModel(source)
        self.disagreeing_only = False

    def set_disagreeing_only(self, value: bool) -> None:
        refilter(self, lambda: setattr(self, "disagreeing_only", value))

    def filterAcceptsRow(self, source_row: int, source_parent: AnyIndex) -> bool:
        if not self.disagreeing_only:
            return True
        model = self.sourceModel()
        assert isinstance(model, PendingModel)
        item = model.items[source_row]
        return item.prediction is not None and item.prediction != item.proposed_label


def describe(item: PendingPhoto) -> str:
    lines = [f"Submission #{item.id}", f"Proposed label: {item.proposed_label}"]
    if item.prediction is not None and item.confidence is not None:
        lines.append(f"Model said: {item.prediction} at {item.confidence:.0%}")
    else:
        lines.append("Model said: nothing (no model when it was submitted)")
    if item.near_duplicate_of is not None:
        lines.append(
            f"Looks like photo #{item.near_duplicate_of} "
            f"(distance {item.near_duplicate_distance or 0:.3f})"
        )
    if item.submitted_by:
        lines.append(f"Submitted by: {item.submitted_by}")
    return "\n".join(lines)


class PendingTile(QStyledItemDelegate):
    def __init__(self, model: PendingModel) -> None:
        super().__init__()
        self.model = model

    def sizeHint(self, option: QStyleOptionViewItem, index: AnyIndex) -> QSize:
        return TILE

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: AnyIndex) -> None:
        item: PendingPhoto = index.data(ITEM_ROLE)
        pixmap = index.data(Qt.ItemDataRole.DecorationRole)
        painter.save()
        rect = option.rect.adjusted(3, 3, -3, -3)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        palette = option.palette
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(
            palette.color(QPalette.ColorRole.Highlight)
            if selected
            else palette.color(QPalette.ColorRole.AlternateBase)
        )
        painter.drawRoundedRect(rect, 6, 6)
        area = QRect(rect.left() + 6, rect.top() + 6, rect.width() - 12, rect.height() - 48)
        if isinstance(pixmap, QPixmap):
            scaled = pixmap.scaled(
                area.size(),
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
            painter.drawPixmap(
                area.left() + (area.width() - scaled.width()) // 2,
                area.top() + (area.height() - scaled.height()) // 2,
                scaled,
            )
        label = self.model.label_for(item)
        disagree = item.prediction is not None and item.prediction != label
        painter.setPen(
            palette.color(
                QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
            )
        )
        line = QRect(rect.left() + 4, area.bottom() + 4, rect.width() - 8, 18)
        changed = " (set)" if item.id in self.model.chosen else ""
        painter.drawText(line, Qt.AlignmentFlag.AlignCenter, f"{label}{changed}")
        line.translate(0, 18)
        if item.prediction is not None and item.confidence is not None:
            if disagree:
                painter.setPen(QColor(239, 108, 0))
            painter.drawText(
                line,
                Qt.AlignmentFlag.AlignCenter,
                f"model: {item.prediction} {item.confidence:.0%}"
                + (" ⚠" if item.near_duplicate_of else ""),
            )
        painter.restore()


class PasswordDialog(QDialog):
    """Asks for the admin secret: the local password (chosen at first use) or the token."""

    def __init__(self, title: str, prompt: str, *, confirm: bool, parent: QWidget | None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.secret = QLineEdit()
        self.secret.setEchoMode(QLineEdit.EchoMode.Password)
        self.again = QLineEdit()
        self.again.setEchoMode(QLineEdit.EchoMode.Password)
        self.error = QLabel()
        self.error.setStyleSheet("color: #d32f2f;")
        form = QFormLayout(self)
        intro = QLabel(prompt)
        intro.setWordWrap(True)
        form.addRow(intro)
        form.addRow("Password" if confirm else "Secret", self.secret)
        if confirm:
            form.addRow("Again", self.again)
        self.confirm = confirm
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(self.error)
        form.addRow(buttons)

    def accept(self) -> None:
        if self.confirm and self.secret.text() != self.again.text():
            self.error.setText("The two entries differ.")
            return
        super().accept()


def sign_in(backend: Backend, parent: QWidget) -> bool:
    """Make sure the backend holds admin credentials, asking for them if needed."""
    if backend.admin_signed_in:
        return True
    first_use = backend.needs_admin_password_choice()
    if first_use:
        dialog = PasswordDialog(
            "Choose the admin password",
            "Reviewing submissions and changing models needs an admin password. Choose one "
            "now (at least 8 characters); it is stored only as a salted hash.",
            confirm=True,
            parent=parent,
        )
    elif backend.mode == "local":
        dialog = PasswordDialog(
            "Admin sign-in", "Enter the admin password.", confirm=False, parent=parent
        )
    else:
        dialog = PasswordDialog(
            "Admin sign-in",
            "Enter the edge server's admin token (shown once when the server first started; "
            "`classifi admin-token reset` makes a new one).",
            confirm=False,
            parent=parent,
        )
    while dialog.exec():
        secret = dialog.secret.text()

        def check(secret: str = secret) -> None:
            if first_use:
                backend.choose_admin_password(secret)
            backend.sign_in(secret)

        error = wait_for(check)  # a server round trip, or scrypt: off the GUI thread
        if error is None:
            return True
        if not isinstance(error, ClassifiError):
            raise error
        dialog.error.setText(str(error))  # a wrong secret, or a server that does not answer
    return False


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

        self.model = PendingModel()
        self.proxy = PendingFilter(self.model)
        self.grid = QListView()
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setUniformItemSizes(True)
        self.grid.setModel(self.proxy)
        self.grid.setItemDelegate(PendingTile(self.model))
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
            f"Keys — {keys}   A: approve   R: reject   arrows: move   "
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
        self.audit_button = QPushButton("Audit log…")
        self.audit_button.clicked.connect(self.show_audit_log)
        self.disagree_button = QPushButton("Only disagreements")
        self.disagree_button.setCheckable(True)
        self.disagree_button.toggled.connect(self.proxy.set_disagreeing_only)
        for button in (
            self.approve_button,
            self.reject_button,
            self.undo_button,
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
        self.setCentralWidget(splitter)

        QShortcut(QKeySequence.StandardKey.Undo, self, activated=self.undo)
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
            from core.imaging import check_photo

            out = []
            for photo_id in ids:
                data = backend.submission_image(photo_id)
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

    # Decisions -----------------------------------------------------------------------------
    def set_label(self, label: str) -> None:
        items = self.selected_items()
        self.model.choose([item.id for item in items], label)
        self._show_preview()

    def approve_selected(self) -> None:
        items = self.selected_items()
        by_label: dict[str, list[int]] = {}
        for item in items:
            by_label.setdefault(self.model.label_for(item), []).append(item.id)
        self._decide(
            items,
            lambda: [
                decision
                for label, ids in by_label.items()
                for decision in self.backend.review(ids, "approve", label)
            ],
        )

    def reject_selected(self) -> None:
        items = self.selected_items()
        ids = [item.id for item in items]
        self._decide(items, lambda: self.backend.review(ids, "reject", None))

    def _decide(self, items: list[PendingPhoto], call: Any) -> None:
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
            lambda: self.backend.undo_review(len(items)),
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

    def _fill(self, entries: list[dict[str, Any]]) -> None:
        self.table.setRowCount(len(entries))
        for row, entry in enumerate(entries):
            values = (
                entry.get("at", ""),
                entry.get("actor", ""),
                entry.get("action", ""),
                entry.get("photo_id") or entry.get("model_version_id") or "",
                entry.get("old_label") or "",
                entry.get("new_label") or "",
            )
            for column, value in enumerate(values):
                self.table.setItem(row, column, QTableWidgetItem(str(value)))


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
