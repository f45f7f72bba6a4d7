"""The classify view's data: one row per photo, a table model, a filter/sort proxy and the
delegates that paint confidence bars and grid tiles."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
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

THUMBNAIL_SIZE = 128
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
ROW_ROLE = Qt.ItemDataRole.UserRole + 2

AnyIndex = QModelIndex | QPersistentModelIndex


class RowState(enum.StrEnum):
    WAITING = "waiting"
    DONE = "done"
    ERROR = "error"
    CANCELLED = "cancelled"


@dataclass
class PhotoRow:
    """What the view knows about one dropped photo."""

    path: Path
    state: RowState = RowState.WAITING
    label: str | None = None
    confidence: float | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    model_version: int | str | None = None
    error: str | None = None
    thumbnail: QImage | None = None
    submitted: str | None = None  # what the submission answered, once submitted
    #: The prediction's own verdicts (its model's calibrated threshold, its training photos).
    is_unsure: bool = False
    out_of_distribution: bool = False

    def unsure(self, threshold: float) -> bool:
        """Unsure by the model's own verdict, or below ``threshold`` (the setting
        unsure_below, for an answer without one). A photo of none of the labels is unsure."""
        below = self.confidence is not None and self.confidence < threshold
        return self.is_unsure or self.out_of_distribution or below


class Column(enum.IntEnum):
    PHOTO = 0
    LABEL = 1
    CONFIDENCE = 2
    PROBABILITIES = 3
    STATUS = 4


HEADERS = {
    Column.PHOTO: "Photo",
    Column.LABEL: "Label",
    Column.CONFIDENCE: "Confidence",
    Column.PROBABILITIES: "Probabilities",
    Column.STATUS: "Status",
}


class ResultsModel(QAbstractTableModel):
    """The photos of the current session, in the order they were dropped."""

    def __init__(self, unsure_below: float, parent: QObject) -> None:
        super().__init__(parent)  # Qt deletes it with its window, never Python's collector
        self.rows: list[PhotoRow] = []
        self._index_of: dict[Path, int] = {}
        self.unsure_below = unsure_below
        self._pixmaps: dict[int, QPixmap] = {}  # made lazily on the GUI thread from QImages

    # Reading -------------------------------------------------------------------------------
    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(Column)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return HEADERS[Column(section)]
        return None

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        column = Column(index.column())
        if role == ROW_ROLE:
            return row
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(row, column)
        if role == SORT_ROLE:
            return self._sort_key(row, column)
        if role == Qt.ItemDataRole.DecorationRole and column == Column.PHOTO:
            return self.pixmap(index.row())
        if role == Qt.ItemDataRole.ToolTipRole:
            if column == Column.STATUS:
                return self.status_text(row)
            return f"{row.path}\n{row.error}" if row.error else str(row.path)
        if role == Qt.ItemDataRole.ForegroundRole and column in (Column.LABEL, Column.STATUS):
            if row.state == RowState.ERROR:
                return QColor(211, 47, 47)
            if row.unsure(self.unsure_below):
                return QColor(239, 108, 0)
        return None

    def _display(self, row: PhotoRow, column: Column) -> str:
        if column == Column.PHOTO:
            return row.path.name
        if column == Column.LABEL:
            return row.label or ""
        if column == Column.CONFIDENCE:
            return f"{row.confidence:.0%}" if row.confidence is not None else ""
        if column == Column.PROBABILITIES:
            return "\n".join(f"{label} {p:.0%}" for label, p in row.probabilities.items())
        return self.status_text(row)

    def status_text(self, row: PhotoRow) -> str:
        if row.state == RowState.ERROR:
            return f"Error: {row.error}"
        if row.state == RowState.WAITING:
            return "Waiting…"
        if row.state == RowState.CANCELLED:
            return "Not classified (cancelled)"
        parts = []
        if row.out_of_distribution:
            parts.append(f"Not a {' or '.join(row.probabilities)} photo")
        elif row.unsure(self.unsure_below):
            parts.append("Unsure")
        if row.submitted:
            parts.append(row.submitted)
        return " · ".join(parts) or "OK"

    def _sort_key(self, row: PhotoRow, column: Column) -> Any:
        if column == Column.CONFIDENCE:
            return row.confidence if row.confidence is not None else -1.0
        if column == Column.PHOTO:
            return row.path.name.lower()
        return self._display(row, column).lower()

    def pixmap(self, position: int) -> QPixmap | None:
        image = self.rows[position].thumbnail
        if image is None:
            return None
        if position not in self._pixmaps:
            self._pixmaps[position] = QPixmap.fromImage(image)
        return self._pixmaps[position]

    def row_at(self, position: int) -> PhotoRow:
        return self.rows[position]

    def has(self, path: Path) -> bool:
        return path in self._index_of

    # Writing -------------------------------------------------------------------------------
    def add_waiting(self, paths: list[Path]) -> list[Path]:
        """Append rows for paths not shown yet; return the ones added."""
        new = [path for path in dict.fromkeys(paths) if path not in self._index_of]
        if not new:
            return []
        start = len(self.rows)
        self.beginInsertRows(QModelIndex(), start, start + len(new) - 1)
        for offset, path in enumerate(new):
            self._index_of[path] = start + offset
            self.rows.append(PhotoRow(path))
        self.endInsertRows()
        return new

    def update(self, results: list[PhotoRow]) -> None:
        """Replace the rows of the same paths with their finished results."""
        touched = []
        for result in results:
            position = self._index_of.get(result.path)
            if position is None:
                continue
            self.rows[position] = result
            self._pixmaps.pop(position, None)
            touched.append(position)
        if touched:
            self.dataChanged.emit(
                self.index(min(touched), 0), self.index(max(touched), len(Column) - 1)
            )

    def mark_cancelled(self) -> None:
        for position, row in enumerate(self.rows):
            if row.state == RowState.WAITING:
                row.state = RowState.CANCELLED
                self.dataChanged.emit(
                    self.index(position, 0), self.index(position, len(Column) - 1)
                )

    def set_submitted(self, path: Path, text: str) -> None:
        position = self._index_of[path]
        self.rows[position].submitted = text
        self.dataChanged.emit(self.index(position, 0), self.index(position, len(Column) - 1))

    def clear(self) -> None:
        self.beginResetModel()
        self.rows, self._index_of, self._pixmaps = [], {}, {}
        self.endResetModel()

    def counts(self) -> dict[str, int]:
        done = [row for row in self.rows if row.state == RowState.DONE]
        return {
            "photos": len(self.rows),
            "classified": len(done),
            "unsure": sum(row.unsure(self.unsure_below) for row in done),
            "errors": sum(row.state == RowState.ERROR for row in self.rows),
        }


def refilter(proxy: QSortFilterProxyModel, change: Callable[[], None]) -> None:
    """Apply ``change`` to a proxy's filter, with Qt 6.10's API where present (the older
    ``invalidateRowsFilter`` is deprecated there)."""
    if hasattr(proxy, "beginFilterChange"):
        proxy.beginFilterChange()
        change()
        proxy.endFilterChange(QSortFilterProxyModel.Direction.Rows)
    else:
        change()
        proxy.invalidateRowsFilter()


ALL = "All photos"
UNSURE = "Unsure"
ERRORS = "Errors"


class ResultsFilter(QSortFilterProxyModel):
    """Show one label, the unsure photos or the errors; sorts on the model's SORT_ROLE."""

    def __init__(self, source: ResultsModel, parent: QObject) -> None:
        super().__init__(parent)
        self.setSourceModel(source)
        self.setSortRole(SORT_ROLE)
        self.choice = ALL

    def set_choice(self, choice: str) -> None:
        refilter(self, lambda: setattr(self, "choice", choice))

    def filterAcceptsRow(self, source_row: int, source_parent: AnyIndex) -> bool:
        if self.choice == ALL:
            return True
        model = self.sourceModel()
        assert isinstance(model, ResultsModel)
        row = model.row_at(source_row)
        if self.choice == UNSURE:
            return row.state == RowState.DONE and row.unsure(model.unsure_below)
        if self.choice == ERRORS:
            return row.state == RowState.ERROR
        return row.label == self.choice


def _bar_color(row: PhotoRow, unsure_below: float) -> QColor:
    return QColor(239, 108, 0) if row.unsure(unsure_below) else QColor(67, 160, 71)


class ConfidenceDelegate(QStyledItemDelegate):
    """A horizontal bar with the percentage on it, orange when the model is unsure."""

    def __init__(self, model: ResultsModel, view: QWidget) -> None:
        super().__init__(view)  # owned by its view: Qt does not keep a delegate alive
        self.model = model

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: AnyIndex) -> None:
        row: PhotoRow = index.data(ROW_ROLE)
        if row is None or row.confidence is None:
            super().paint(painter, option, index)
            return
        self.initStyleOption(option, index)
        style = option.widget.style() if option.widget else None
        if style is not None:  # selection background, focus frame
            option.text = ""
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, option, painter, option.widget)
        painter.save()
        frame = option.rect.adjusted(4, 6, -4, -6)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(option.palette.color(QPalette.ColorRole.AlternateBase).darker(110))
        painter.drawRoundedRect(frame, 3, 3)
        filled = QRect(frame)
        filled.setWidth(max(2, round(frame.width() * row.confidence)))
        painter.setBrush(_bar_color(row, self.model.unsure_below))
        painter.drawRoundedRect(filled, 3, 3)
        painter.setPen(option.palette.color(QPalette.ColorRole.Text))
        painter.drawText(frame, Qt.AlignmentFlag.AlignCenter, f"{row.confidence:.0%}")
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: AnyIndex) -> QSize:
        return QSize(120, 24)


class TileDelegate(QStyledItemDelegate):
    """A grid tile: the thumbnail, the label and a thin confidence bar; errors in red."""

    TILE = QSize(THUMBNAIL_SIZE + 24, THUMBNAIL_SIZE + 52)

    def __init__(self, model: ResultsModel, view: QWidget) -> None:
        super().__init__(view)  # owned by its view: Qt does not keep a delegate alive
        self.model = model

    def sizeHint(self, option: QStyleOptionViewItem, index: AnyIndex) -> QSize:
        return self.TILE

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: AnyIndex) -> None:
        row: PhotoRow = index.data(ROW_ROLE)
        pixmap = index.data(Qt.ItemDataRole.DecorationRole)
        painter.save()
        rect = option.rect.adjusted(4, 4, -4, -4)
        palette = option.palette
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(
            palette.color(QPalette.ColorRole.Highlight)
            if selected
            else palette.color(QPalette.ColorRole.AlternateBase)
        )
        painter.drawRoundedRect(rect, 6, 6)
        image_area = QRect(rect.left() + 8, rect.top() + 6, rect.width() - 16, THUMBNAIL_SIZE)
        if isinstance(pixmap, QPixmap):
            scaled = pixmap.scaled(
                image_area.size(),
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
            left = image_area.left() + (image_area.width() - scaled.width()) // 2
            top = image_area.top() + (image_area.height() - scaled.height()) // 2
            painter.drawPixmap(left, top, scaled)
        text_rect = QRect(rect.left() + 6, image_area.bottom() + 4, rect.width() - 12, 18)
        text_color = palette.color(
            QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
        )
        if row.state == RowState.ERROR:
            text_color, text = QColor(211, 47, 47), "Error"
        elif row.state == RowState.DONE and row.confidence is not None:
            unsure = " ?" if row.unsure(self.model.unsure_below) else ""
            text = f"{row.label} {row.confidence:.0%}{unsure}"
        else:
            text = self.model.status_text(row)
        painter.setPen(text_color)
        painter.drawText(text_rect, Qt.AlignmentFlag.AlignCenter, text)
        if row.confidence is not None:
            bar = QRect(rect.left() + 10, text_rect.bottom() + 4, rect.width() - 20, 5)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(palette.color(QPalette.ColorRole.Mid))
            painter.drawRoundedRect(bar, 2, 2)
            bar.setWidth(max(2, round(bar.width() * row.confidence)))
            painter.setBrush(_bar_color(row, self.model.unsure_below))
            painter.drawRoundedRect(bar, 2, 2)
        painter.restore()
