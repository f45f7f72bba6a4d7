"""The detail pane's heatmap toggle: the selected photo with the evidence for its label laid
over it (the backend's explain: one backbone pass gives the label and the map)."""

from __future__ import annotations

import base64
from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QCheckBox, QLabel, QVBoxLayout, QWidget

from core.imaging import read_photo_file
from desktop.backends import Backend
from desktop.results import PhotoRow, RowState
from desktop.tasks import run_task

PREVIEW = (220, 200)  # the detail pane's preview size


class HeatmapToggle(QWidget):
    """A "Show heatmap" box and, when it is ticked, the heatmap of the shown photo."""

    def __init__(self, backend: Callable[[], Backend]) -> None:
        """``backend()`` is the main window's current backend (it may switch)."""
        super().__init__()
        self.backend = backend
        self.row: PhotoRow | None = None
        self.cache: dict[str, QPixmap] = {}  # path -> heatmap, for this session
        self.box = QCheckBox("Show heatmap")
        self.box.setToolTip("Where in the photo the model found its label: the warmer, the more.")
        self.box.toggled.connect(self._refresh)
        self.picture = QLabel()
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.note = QLabel()
        self.note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.box, self.picture, self.note):
            layout.addWidget(widget)
        self.show_row(None)

    def attach_to(self, pane: QWidget) -> None:
        """Sit in the detail pane, under its preview."""
        layout = pane.layout()
        assert isinstance(layout, QVBoxLayout)
        layout.insertWidget(1, self)

    def show_row(self, row: PhotoRow | None) -> None:
        """Follow the detail pane: the heatmap of ``row`` when the box is ticked."""
        self.row = row
        self.box.setEnabled(row is not None and row.state == RowState.DONE)
        self._refresh()

    def _refresh(self, *_args: object) -> None:
        self.picture.clear()
        self.note.clear()
        row = self.row
        if not self.box.isChecked() or row is None or row.state != RowState.DONE:
            self.picture.hide()
            return
        self.picture.show()
        key = str(row.path)
        if key in self.cache:
            self._show(key, self.cache[key])
            return
        self.note.setText("Drawing the heatmap…")
        backend = self.backend()

        def draw() -> QImage:
            prediction = backend.explain(read_photo_file(row.path))
            assert prediction.heatmap is not None  # explain always draws one
            return QImage.fromData(base64.b64decode(prediction.heatmap))  # a PNG, detected

        run_task(draw, lambda image: self._on_drawn(key, image), self._on_error)

    def _on_drawn(self, key: str, image: QImage) -> None:
        self.cache[key] = QPixmap.fromImage(image)
        if self.row is not None and str(self.row.path) == key:
            self._show(key, self.cache[key])

    def _show(self, key: str, pixmap: QPixmap) -> None:
        self.note.clear()
        self.picture.setPixmap(
            pixmap.scaled(
                *PREVIEW,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        )

    def _on_error(self, error: BaseException) -> None:
        self.note.setText(f"No heatmap: {error}")
