"""A classification run: expand dropped paths, then classify them batch by batch off the GUI
thread, publishing each finished batch, until done or cancelled."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from core.config import Settings
from core.errors import ClassifiError, InvalidImage
from core.imaging import check_photo, find_photos, read_photo_file
from core.wire import Prediction
from desktop.results import THUMBNAIL_SIZE, PhotoRow, RowState
from desktop.tasks import CancelToken, run_task

BATCH_SIZE = 16
#: The backend's classify: a prediction, or the reason, for each photo's bytes.
Classify = Callable[[Sequence[bytes]], list[Prediction | ClassifiError]]


def thumbnail_of(image: Image.Image, size: int = THUMBNAIL_SIZE) -> QImage:
    """A small QImage (safe to build off the GUI thread, unlike a QPixmap)."""
    small = image.copy()
    small.thumbnail((size, size))
    data = small.tobytes("raw", "RGB")
    return QImage(
        data, small.width, small.height, 3 * small.width, QImage.Format.Format_RGB888
    ).copy()  # copy: the QImage must own its pixels once `data` goes away


def classify_batch(paths: list[Path], settings: Settings, classify: Classify) -> list[PhotoRow]:
    """Read each photo, classify the readable ones together, keep each error on its own row.
    Runs on a pool thread."""
    rows: dict[Path, PhotoRow] = {}
    readable: list[tuple[Path, bytes]] = []
    for path in paths:
        try:
            readable.append((path, read_photo_file(path)))
        except InvalidImage as exc:
            rows[path] = PhotoRow(path, state=RowState.ERROR, error=str(exc))
    if readable:
        answers = classify([data for _, data in readable])
        for (path, data), answer in zip(readable, answers, strict=True):
            rows[path] = photo_row(path, data, answer, settings)
    return [rows[path] for path in paths]


def photo_row(
    path: Path, data: bytes, answer: Prediction | ClassifiError, settings: Settings
) -> PhotoRow:
    """The row of a classified photo, with a thumbnail decoded here (whichever backend
    classified it), or of the reason it was refused."""
    if isinstance(answer, ClassifiError):
        return PhotoRow(path, state=RowState.ERROR, error=str(answer))
    try:
        thumbnail: QImage | None = thumbnail_of(check_photo(data, settings).image)
    except InvalidImage:  # a server with other limits classified it: the row shows no picture
        thumbnail = None
    return PhotoRow(
        path,
        state=RowState.DONE,
        label=answer.label,
        confidence=answer.confidence,
        probabilities=dict(answer.probabilities),
        model_version=answer.model_version,
        thumbnail=thumbnail,
        is_unsure=answer.unsure,
        out_of_distribution=answer.out_of_distribution,
    )


class ClassifyRun(QObject):
    """One run over a list of paths. Signals arrive on the GUI thread."""

    expanded = Signal(list)  # the photo paths found, before any is classified
    batch_done = Signal(list)  # PhotoRows
    progress = Signal(int, int)  # done, total
    finished = Signal(bool)  # cancelled?
    failed = Signal(object)  # the exception that stopped the run (e.g. NoChampion)

    def __init__(
        self,
        settings: Settings,
        classify: Classify,
        batch_size: int = BATCH_SIZE,
        *,
        parent: QObject,
    ) -> None:
        super().__init__(parent)
        self.settings = settings
        self.classify = classify
        self.batch_size = batch_size
        self.token = CancelToken()
        self.todo: list[Path] = []
        self.total = 0
        self.running = False

    def start(self, dropped: list[Path], skip: Callable[[Path], bool] = lambda _: False) -> None:
        self.running = True
        run_task(
            lambda: [path for path in find_photos(dropped) if not skip(path)],
            self._on_expanded,
            self._fail,
        )

    def cancel(self) -> None:
        self.token.cancel()

    def _on_expanded(self, paths: list[Path]) -> None:
        self.todo, self.total = list(paths), len(paths)
        self.expanded.emit(paths)
        self.progress.emit(0, self.total)
        self._next()

    def _next(self) -> None:
        if self.token.cancelled or not self.todo:
            self.running = False
            self.finished.emit(self.token.cancelled)
            return
        batch, self.todo = self.todo[: self.batch_size], self.todo[self.batch_size :]
        run_task(
            lambda: classify_batch(batch, self.settings, self.classify), self._on_batch, self._fail
        )

    def _on_batch(self, rows: list[PhotoRow]) -> None:
        self.batch_done.emit(rows)
        self.progress.emit(self.total - len(self.todo), self.total)
        self._next()

    def _fail(self, error: BaseException) -> None:
        self.running = False
        if not isinstance(error, ClassifiError):
            error = RuntimeError(f"Classification failed unexpectedly: {error!r}")
        self.failed.emit(error)
