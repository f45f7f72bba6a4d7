"""A classification run: expand dropped paths, then classify them batch by batch off the GUI
thread, publishing each finished batch, until done or cancelled."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from core.config import Settings
from core.errors import ClassifiError, InvalidImage
from core.imaging import CheckedPhoto, check_photo
from desktop.results import THUMBNAIL_SIZE, PhotoRow, RowState
from desktop.tasks import CancelToken, run_task

BATCH_SIZE = 16
# Folders are searched for these; dropped files are tried whatever their name.
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


def expand_paths(paths: Iterable[Path]) -> list[Path]:
    """Files as given, folders searched recursively for photo files, in a stable order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(
                    child
                    for child in path.rglob("*")
                    if child.is_file() and child.suffix.lower() in PHOTO_SUFFIXES
                )
            )
        elif path.is_file():
            found.append(path)
    return list(dict.fromkeys(found))


def thumbnail_of(image: Image.Image, size: int = THUMBNAIL_SIZE) -> QImage:
    """A small QImage (safe to build off the GUI thread, unlike a QPixmap)."""
    small = image.copy()
    small.thumbnail((size, size))
    data = small.tobytes("raw", "RGB")
    return QImage(
        data, small.width, small.height, 3 * small.width, QImage.Format.Format_RGB888
    ).copy()  # copy: the QImage must own its pixels once `data` goes away


def read_photo(path: Path, settings: Settings) -> CheckedPhoto:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidImage(
            f"Cannot read {path.name}: {exc.strerror or exc}", code="unreadable"
        ) from None
    return check_photo(data, settings)


def classify_batch(
    paths: list[Path],
    settings: Settings,
    classify: Callable[[list[CheckedPhoto]], list[PhotoRow]],
) -> list[PhotoRow]:
    """Check and decode each photo, classify the good ones together, keep each error on its
    own row. Runs on a pool thread."""
    rows: dict[Path, PhotoRow] = {}
    good: list[tuple[Path, CheckedPhoto]] = []
    for path in paths:
        try:
            photo = read_photo(path, settings)
        except InvalidImage as exc:
            rows[path] = PhotoRow(path, state=RowState.ERROR, error=str(exc))
        else:
            good.append((path, photo))
    if good:
        for (path, photo), result in zip(good, classify([photo for _, photo in good]), strict=True):
            result.path = path
            if result.thumbnail is None:
                result.thumbnail = thumbnail_of(photo.image)
            rows[path] = result
    return [rows[path] for path in paths]


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
        classify: Callable[[list[CheckedPhoto]], list[PhotoRow]],
        batch_size: int = BATCH_SIZE,
    ) -> None:
        super().__init__()
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
            lambda: [path for path in expand_paths(dropped) if not skip(path)],
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
