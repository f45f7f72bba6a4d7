"""Get started (and add photos or labels later): labelled folders in, a trained model out.

Four pages, one after the other:

1. choose a folder with one sub-folder per label, or drop the label folders on the window;
2. what was found, before anything is stored: photos per label (new, already in the home),
   the files skipped and why, and what stops the import (a single label, too few photos);
3. the import and the training in a child process (:mod:`desktop.jobs`): photos stored,
   embedded, epochs, the curves as they grow, and Cancel;
4. the result: the accuracy and the confusion matrix, and what became of the model (it
   classifies now; or it waits for the admin, as the first model of a new label set does).

Failures show on the page, never in a modal box.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.app.getting_started import ImportPreview
from core.wire import ModelState
from desktop.backends.local import ADMIN_ACTOR, LocalBackend
from desktop.charts import ConfusionMatrix
from desktop.job_process import IMPORT
from desktop.jobs import Job, JobPanel
from desktop.sign_in import sign_in
from desktop.tasks import run_task

if TYPE_CHECKING:
    from desktop.main_window import MainWindow

ERROR_STYLE = "color: #d32f2f;"
SKIPPED_SHOWN = 200  # rows of the skipped table; the count says how many there are


def heading(text: str) -> QLabel:
    label = QLabel(text)
    font = label.font()
    font.setPointSizeF(font.pointSizeF() * 1.5)
    label.setFont(font)
    label.setWordWrap(True)
    return label


def paragraph(text: str = "") -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


class ChoosePage(QWidget):
    def __init__(self, first: bool) -> None:
        super().__init__()
        self.choose_button = QPushButton("Choose a folder…")
        layout = QVBoxLayout(self)
        layout.addStretch()
        layout.addWidget(
            heading("Get started: teach the app your labels" if first else "Add labelled photos")
        )
        layout.addWidget(
            paragraph(
                "Choose a folder with one sub-folder of photos per label, or drop the label "
                "folders on this window. The folder names become the labels (for example "
                "dandelion/ and grass/). You see what was found before anything is imported."
                if first
                else "Choose a folder with one sub-folder per label, or drop label folders "
                "here. A folder named after a known label adds photos to it; a new name adds "
                "a label, and then a new model is trained on every label."
            )
        )
        row = QHBoxLayout()
        row.addStretch()
        row.addWidget(self.choose_button)
        row.addStretch()
        layout.addLayout(row)
        layout.addStretch()


class PreviewPage(QWidget):
    def __init__(self) -> None:
        super().__init__()
        self.title = heading("Checking the photos…")
        self.checking = QProgressBar()
        self.checking.setFormat("%v of %m photos checked")
        self.labels_line = paragraph()
        self.counts = QTableWidget(0, 3)
        self.counts.setHorizontalHeaderLabels(["Label", "New photos", "Already in this home"])
        self.skipped_line = paragraph()
        self.skipped = QTableWidget(0, 2)
        self.skipped.setHorizontalHeaderLabels(["Skipped file", "Why"])
        for table in (self.counts, self.skipped):
            table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
            table.verticalHeader().hide()
            table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.problems = paragraph()
        self.problems.setStyleSheet(ERROR_STYLE)
        self.import_button = QPushButton("Import and train")
        self.back_button = QPushButton("Choose another folder")
        buttons = QHBoxLayout()
        buttons.addWidget(self.back_button)
        buttons.addStretch()
        buttons.addWidget(self.import_button)
        layout = QVBoxLayout(self)
        for widget in (self.title, self.checking, self.labels_line, self.counts):
            layout.addWidget(widget)
        layout.addWidget(self.skipped_line)
        layout.addWidget(self.skipped)
        layout.addWidget(self.problems)
        layout.addLayout(buttons)

    def checking_started(self) -> None:
        self.title.setText("Checking the photos…")
        self.checking.setRange(0, 0)
        self.checking.show()
        for widget in (self.labels_line, self.counts, self.skipped_line, self.skipped):
            widget.hide()
        self.problems.clear()
        self.import_button.setEnabled(False)

    def show_checked(self, done: int, total: int) -> None:
        self.checking.setRange(0, max(total, 1))
        self.checking.setValue(done)

    def show_preview(self, preview: ImportPreview) -> None:
        self.checking.hide()
        new_total = sum(preview.new_photos.values())
        self.title.setText(
            f"Found {new_total} new photos for {len(preview.labels_after)} labels"
            if preview.ok
            else "This folder cannot be imported yet"
        )
        labels = [
            f"{label} (new)" if label in preview.new_labels else label
            for label in preview.labels_after
        ]
        self.labels_line.setText("Labels after the import: " + (", ".join(labels) or "none"))
        self.counts.setRowCount(len(preview.labels_after))
        for row, label in enumerate(preview.labels_after):
            values = (
                label,
                str(preview.new_photos.get(label, 0)),
                str(preview.already_present.get(label, 0)),
            )
            for column, value in enumerate(values):
                self.counts.setItem(row, column, QTableWidgetItem(value))
        reasons = ", ".join(
            f"{count} {reason}" for reason, count in preview.skipped_by_reason().items()
        )
        self.skipped_line.setText(
            f"{len(preview.skipped)} files will not be imported ({reasons}):"
            if preview.skipped
            else "Every photo can be read."
        )
        shown = preview.skipped[:SKIPPED_SHOWN]
        self.skipped.setRowCount(len(shown))
        for row, item in enumerate(shown):
            name = QTableWidgetItem(Path(item.source).name)
            name.setToolTip(item.source)
            self.skipped.setItem(row, 0, name)
            self.skipped.setItem(row, 1, QTableWidgetItem(item.message))
        for widget in (self.labels_line, self.counts, self.skipped_line):
            widget.show()
        self.skipped.setVisible(bool(preview.skipped))
        self.problems.setText("\n".join(preview.problems))
        self.import_button.setEnabled(preview.ok)
        self.import_button.setText(
            "Import and train" if preview.total_new else "Train on the photos already here"
        )

    def show_error(self, error: BaseException) -> None:
        self.checking.hide()
        self.title.setText("The folder could not be read")
        self.problems.setText(str(error))


class ResultPage(QWidget):
    def __init__(self) -> None:
        super().__init__()
        self.title = heading("")
        self.summary = paragraph()
        self.confusion = ConfusionMatrix()
        self.decision = paragraph()
        self.error = paragraph()
        self.error.setStyleSheet(ERROR_STYLE)
        self.promote_button = QPushButton("Make it the champion")
        self.again_button = QPushButton("Import more photos")
        self.done_button = QPushButton("Start classifying")
        buttons = QHBoxLayout()
        buttons.addWidget(self.again_button)
        buttons.addStretch()
        buttons.addWidget(self.promote_button)
        buttons.addWidget(self.done_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.summary)
        layout.addWidget(self.confusion, 1)
        layout.addWidget(self.decision)
        layout.addWidget(self.error)
        layout.addLayout(buttons)


class GetStartedWindow(QMainWindow):
    """The import of labelled folders for ``main``'s home (local mode)."""

    previewed = Signal(object)  # the ImportPreview, once every photo is checked
    finished = Signal(object)  # the import's outcome (plain data), once it is over
    failed = Signal(object)  # the error that stopped a preview or an import
    checked = Signal(int, int)  # photos checked by the preview, emitted from a pool thread

    def __init__(self, main: MainWindow, *, first: bool) -> None:
        super().__init__(main)
        self.main = main
        self.preview: ImportPreview | None = None
        self.job: Job | None = None
        self.outcome: dict[str, Any] | None = None
        self.setWindowTitle("Get started" if first else "Add labelled photos")
        self.setAcceptDrops(True)
        self.resize(820, 640)

        self.choose_page = ChoosePage(first)
        self.choose_page.choose_button.clicked.connect(self.choose_folder)
        self.preview_page = PreviewPage()
        self.preview_page.back_button.clicked.connect(self.choose_folder)
        self.preview_page.import_button.clicked.connect(self.start_import)
        self.checked.connect(self.preview_page.show_checked)
        self.progress_page = JobPanel()
        self.result_page = ResultPage()
        self.result_page.promote_button.clicked.connect(self.promote)
        self.result_page.done_button.clicked.connect(self.close)
        self.pages = QStackedWidget()
        self.result_page.again_button.clicked.connect(
            lambda: self.pages.setCurrentWidget(self.choose_page)
        )
        for page in (self.choose_page, self.preview_page, self.progress_page, self.result_page):
            self.pages.addWidget(page)
        self.setCentralWidget(self.pages)

    @property
    def backend(self) -> LocalBackend:
        backend = self.main.backend
        assert isinstance(backend, LocalBackend), "labelled folders are imported in local mode"
        return backend

    # Choosing ------------------------------------------------------------------------------
    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Choose the folder of label folders", self.main.last_folder()
        )
        if folder:
            self.main.remember_folder(Path(folder))
            self.preview_paths([Path(folder)])

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and self.job is None:
            event.acceptProposedAction()

    def dragMoveEvent(self, event: QDragEnterEvent) -> None:  # type: ignore[override]
        self.dragEnterEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.preview_paths(paths)

    def preview_paths(self, paths: list[Path]) -> None:
        """Check what ``paths`` hold (every photo is read, off the GUI thread)."""
        self.preview = None
        self.pages.setCurrentWidget(self.preview_page)
        self.preview_page.checking_started()
        backend = self.backend
        run_task(
            lambda: backend.api.preview_import(paths, progress=self.checked.emit),
            self._on_preview,
            self._on_preview_error,
        )

    def _on_preview(self, preview: ImportPreview) -> None:
        self.preview = preview
        self.preview_page.show_preview(preview)
        self.previewed.emit(preview)

    def _on_preview_error(self, error: BaseException) -> None:
        self.preview_page.show_error(error)
        self.failed.emit(error)

    # Importing -----------------------------------------------------------------------------
    def start_import(self) -> None:
        """Import the previewed photos and train, in a child process."""
        if self.preview is None or not self.preview.ok or self.job is not None:
            return
        job = Job(IMPORT, self.backend.settings, self.preview, actor=ADMIN_ACTOR, parent=self)
        job.finished.connect(self._on_imported)
        job.failed.connect(self._on_import_failed)
        self.job = job
        self.progress_page.follow(job, "Importing your photos and training a model")
        self.pages.setCurrentWidget(self.progress_page)
        job.start()

    def _on_imported(self, outcome: dict[str, Any]) -> None:
        self.job = None
        self.outcome = outcome
        self.backend.use_labels(outcome["labels"])
        self.main.apply_labels(outcome["labels"])
        self.main.refresh_champion()
        self._show_result(outcome)
        self.finished.emit(outcome)

    def _on_import_failed(self, error: BaseException) -> None:
        cancelled = self.job is not None and self.job.cancelled
        self.job = None
        page = self.result_page
        page.title.setText("Import cancelled" if cancelled else "The import did not finish")
        page.summary.setText(
            "Nothing half-made was kept: photos not yet all stored were removed; photos "
            "already stored stay, ready for the next training."
        )
        page.confusion.show_matrix([], [])
        page.decision.clear()
        page.error.setText(str(error))
        page.promote_button.hide()
        self.pages.setCurrentWidget(page)
        self.failed.emit(error)

    def _show_result(self, outcome: dict[str, Any]) -> None:
        page = self.result_page
        metrics = outcome["metrics"]
        page.title.setText(f"Model v{outcome['version']} is trained")
        page.summary.setText(
            f"Accuracy {metrics['accuracy']:.1%} on {metrics['count']} photos held out from "
            f"its training ({outcome['photos']['added']} photos imported). Rows are the true "
            "labels, columns what the model said."
        )
        page.confusion.show_matrix(list(metrics["labels"]), metrics["confusion_matrix"])
        page.error.clear()
        state, gate = ModelState(outcome["state"]), outcome["gate"]
        reason = f": {gate['reason']}" if gate else ""
        page.decision.setText(
            {
                ModelState.CHAMPION: "It is the champion: it classifies your photos from now on.",
                ModelState.CANDIDATE: f"It waits for the admin{reason}.",
            }.get(state, f"It is not the champion{reason}.")
        )
        page.promote_button.setVisible(state == ModelState.CANDIDATE)
        self.pages.setCurrentWidget(page)

    def promote(self) -> None:
        if self.outcome is None or not sign_in(self.backend, self):
            return
        version = int(self.outcome["version"])
        run_task(
            lambda: self.backend.promote(version),
            lambda _: self._on_promoted(version),
            lambda error: self.result_page.error.setText(str(error)),
        )

    def _on_promoted(self, version: int) -> None:
        self.result_page.decision.setText(f"Model v{version} is the champion now.")
        self.result_page.promote_button.hide()
        self.main.refresh_champion()


def open_get_started(main: MainWindow, paths: list[Path] | None = None) -> GetStartedWindow:
    """The Get started window of ``main`` (one at a time), previewing ``paths`` if given."""
    window = main.get_started_window
    if window is None:
        window = GetStartedWindow(main, first=main.champion is None)
        main.get_started_window = window
    window.show()
    window.raise_()
    if paths:
        window.preview_paths(paths)
    return window
