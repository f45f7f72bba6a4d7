"""The review window's data: the pending submissions (a list model), the "only
disagreements" filter, and the delegate that paints each one as a tile."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QRect,
    QSize,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QColor, QImage, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from core.wire import PendingPhoto
from desktop.results import refilter

AnyIndex = QModelIndex | QPersistentModelIndex
ITEM_ROLE = Qt.ItemDataRole.UserRole + 1
TILE = QSize(150, 170)


class PendingModel(QAbstractTableModel):
    """The pending submissions, most useful first (the order the review service gives)."""

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)  # Qt deletes it with its window, never Python's collector
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

    def label_for(self, item: PendingPhoto) -> str | None:
        """The label the photo is approved with: the one chosen with a digit, else the proposed."""
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

    def __init__(self, source: PendingModel, parent: QObject) -> None:
        super().__init__(parent)
        self.setSourceModel(source)
        self.disagreeing_only = False

    def set_disagreeing_only(self, value: bool) -> None:
        refilter(self, lambda: setattr(self, "disagreeing_only", value))

    def filterAcceptsRow(self, source_row: int, source_parent: AnyIndex) -> bool:
        if not self.disagreeing_only:
            return True
        model = self.sourceModel()
        assert isinstance(model, PendingModel)
        return model.items[source_row].disagrees


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
    def __init__(self, model: PendingModel, view: QWidget) -> None:
        super().__init__(view)  # owned by its view: Qt does not keep a delegate alive
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
        # Against the label chosen so far: the warning goes once the reviewer agrees.
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
