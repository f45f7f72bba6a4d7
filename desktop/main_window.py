"""The main window: drop photos, see their labels, submit corrections, export the results."""

from __future__ import annotations

import csv
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListView,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from core.config import Settings
from core.errors import NoChampion
from core.imaging import PHOTO_SUFFIXES, read_photo_file
from core.wire import ModelSummary, Submission
from desktop import backup_actions
from desktop.backends import LOCAL, Backend, Queued, describe_submission, open_backend
from desktop.classify_run import ClassifyRun
from desktop.heatmap_view import HeatmapToggle
from desktop.jobs import Job
from desktop.results import (
    ALL,
    ERRORS,
    ROW_ROLE,
    UNSURE,
    Column,
    ConfidenceDelegate,
    PhotoRow,
    ResultsFilter,
    ResultsModel,
    RowState,
    TileDelegate,
)
from desktop.submit_panel import SubmitPanel
from desktop.tasks import run_task
from desktop.weekly_check import WeeklyCheck

if TYPE_CHECKING:
    from desktop.get_started import GetStartedWindow

log = logging.getLogger(__name__)

SYNC_INTERVAL_MS = 30_000
PHOTO_FILTER = (
    f"Photos ({' '.join(f'*{suffix}' for suffix in sorted(PHOTO_SUFFIXES))});;All files (*)"
)

SORTS = {
    "Order dropped": (None, Qt.SortOrder.AscendingOrder),
    "Least confident first": (Column.CONFIDENCE, Qt.SortOrder.AscendingOrder),
    "Most confident first": (Column.CONFIDENCE, Qt.SortOrder.DescendingOrder),
    "Label": (Column.LABEL, Qt.SortOrder.AscendingOrder),
    "Name": (Column.PHOTO, Qt.SortOrder.AscendingOrder),
}


class EmptyState(QWidget):
    """A big friendly message with optional buttons, for "nothing here yet" screens."""

    def __init__(self, title: str, detail: str, buttons: list[QPushButton]) -> None:
        super().__init__()
        layout = QVBoxLayout(self)
        layout.addStretch()
        self.title = QLabel(title)
        self.title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        font = self.title.font()
        font.setPointSizeF(font.pointSizeF() * 1.8)
        self.title.setFont(font)
        self.detail = QLabel(detail)
        self.detail.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.detail.setWordWrap(True)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.title)
        layout.addWidget(self.detail)
        row = QHBoxLayout()
        row.addStretch()
        for button in buttons:
            row.addWidget(button)
        row.addStretch()
        layout.addLayout(row)
        layout.addStretch()
        self.setObjectName("emptyState")


class MainWindow(QMainWindow):
    """The classify view. ``backend`` is built from the preferences when not given."""

    champion_changed = Signal(object)  # ModelSummary | None

    def __init__(
        self, settings: Settings, prefs: QSettings, backend: Backend | None = None
    ) -> None:
        super().__init__()
        self.settings = settings
        self.prefs = prefs
        self.backend = backend or open_backend(settings, prefs)
        self.champion: ModelSummary | None = None
        self._champion_known = False  # False until the backend has answered
        self.run: ClassifyRun | None = None
        self.get_started_window: GetStartedWindow | None = None
        self.waiting_drops: list[Path] = []
        self.setWindowTitle("ClassifiImage")
        self.setAcceptDrops(True)

        self.results = ResultsModel(self.settings.unsure_below, self)
        self.proxy = ResultsFilter(self.results, self)
        self._build_views()
        self._build_toolbar()
        self._build_status_bar()
        self.results.rowsInserted.connect(self._refresh_counts)
        self.results.dataChanged.connect(self._refresh_counts)
        self.results.modelReset.connect(self._refresh_counts)
        self._show_page()
        self._restore_layout()
        self.count_usage("session")
        QTimer.singleShot(0, self.refresh_champion)
        # The weekly retrain check, when no worker serves the queue (local mode).
        self.weekly_check = WeeklyCheck(lambda: self.backend, prefs, self)
        self.weekly_check.started.connect(self._on_weekly_check)
        QTimer.singleShot(0, self.weekly_check.start)
        # Submissions queued while the server was unreachable go out when it answers again.
        self.sync_timer = QTimer(self, interval=SYNC_INTERVAL_MS)
        self.sync_timer.timeout.connect(self.sync_now)
        self.sync_timer.start()

    # Layout --------------------------------------------------------------------------------
    def _build_views(self) -> None:
        self.grid = QListView()
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setUniformItemSizes(True)
        self.grid.setSpacing(4)
        self.grid.setModel(self.proxy)
        self.grid.setModelColumn(Column.PHOTO)
        self.grid.setItemDelegate(TileDelegate(self.results, self.grid))
        self.grid.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)

        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # dropped order until asked
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionModel(self.grid.selectionModel())  # one selection, two views
        self.table.setItemDelegateForColumn(
            Column.CONFIDENCE, ConfidenceDelegate(self.results, self.table)
        )
        self.table.verticalHeader().setDefaultSectionSize(68)
        self.table.verticalHeader().hide()
        self.table.setIconSize(self.table.iconSize().expandedTo(self.grid.iconSize()) * 4)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(Column.STATUS, QHeaderView.ResizeMode.Stretch)
        header.resizeSection(Column.PROBABILITIES, 130)
        header.resizeSection(Column.PHOTO, 230)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # keeps the extension in view
        header.resizeSection(Column.CONFIDENCE, 120)

        self.views = QStackedWidget()
        self.views.addWidget(self.grid)
        self.views.addWidget(self.table)

        self.submit_panel = SubmitPanel(self.settings.labels)
        self.submit_panel.submit_requested.connect(self.submit_selected)
        self.heatmap = HeatmapToggle(lambda: self.backend)  # the detail pane's heatmap toggle
        self.heatmap.attach_to(self.submit_panel)
        self.grid.selectionModel().selectionChanged.connect(self._on_selection)

        splitter = QSplitter()
        splitter.addWidget(self.views)
        splitter.addWidget(self.submit_panel)
        splitter.setStretchFactor(0, 1)
        splitter.setObjectName("resultsSplitter")
        self.splitter = splitter

        add_files = QPushButton("Choose photos…")
        add_files.clicked.connect(self.choose_files)
        add_folder = QPushButton("Choose a folder…")
        add_folder.clicked.connect(self.choose_folder)
        self.drop_page = EmptyState(
            "Drop photos here",
            "Drop one photo, many, or whole folders. Each gets its label and confidence.",
            [add_files, add_folder],
        )
        self.get_started_button = QPushButton("Get started…")
        self.get_started_button.clicked.connect(lambda: self.open_get_started())
        self.no_model_page = EmptyState(
            "No model yet: train one",
            "Classifying needs a model trained on your labels. Get started: choose a folder "
            "with one sub-folder of photos per label, or drop those folders here. The app "
            "imports them and trains a model on this computer.",
            [self.get_started_button],
        )

        self.pages = QStackedWidget()
        for page in (self.drop_page, self.no_model_page, splitter):
            self.pages.addWidget(page)

        self.progress = QProgressBar()
        self.progress.setFormat("%v of %m photos")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.cancel_button)
        self.progress_area = QWidget()
        self.progress_area.setLayout(progress_row)
        self.progress_area.hide()

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addWidget(self.pages, 1)
        layout.addWidget(self.progress_area)
        self.setCentralWidget(central)

    def _build_toolbar(self) -> None:
        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("mainToolbar")
        toolbar.setMovable(False)
        self.add_files_action = QAction("Add photos…", self)
        self.add_files_action.setShortcut(QKeySequence.StandardKey.Open)
        self.add_files_action.triggered.connect(self.choose_files)
        self.add_folder_action = QAction("Add folder…", self)
        self.add_folder_action.triggered.connect(self.choose_folder)
        self.export_action = QAction("Export CSV…", self)
        self.export_action.triggered.connect(self.choose_export)
        self.clear_action = QAction("Clear", self)
        self.clear_action.triggered.connect(self.clear)
        for action in (self.add_files_action, self.add_folder_action):
            toolbar.addAction(action)
        toolbar.addSeparator()

        self.view_buttons = QButtonGroup(self)
        for position, name in enumerate(("Grid", "List")):
            button = QToolButton()
            button.setText(name)
            button.setCheckable(True)
            button.setChecked(position == 0)
            self.view_buttons.addButton(button, position)
            toolbar.addWidget(button)
        self.view_buttons.idClicked.connect(self.views.setCurrentIndex)

        toolbar.addSeparator()
        self.filter_box = QComboBox()
        self.filter_box.addItems([ALL, *self.settings.labels, UNSURE, ERRORS])
        self.filter_box.currentTextChanged.connect(self.proxy.set_choice)
        self.sort_box = QComboBox()
        self.sort_box.addItems(list(SORTS))
        self.sort_box.currentTextChanged.connect(self.sort_by)
        toolbar.addWidget(QLabel(" Show "))
        toolbar.addWidget(self.filter_box)
        toolbar.addWidget(QLabel(" Sort "))
        toolbar.addWidget(self.sort_box)
        toolbar.addSeparator()
        toolbar.addAction(self.export_action)
        toolbar.addAction(self.clear_action)

        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        for action in (self.add_files_action, self.add_folder_action, self.export_action):
            file_menu.addAction(action)
        file_menu.addSeparator()
        self.backup_action = file_menu.addAction("Back up data…")
        self.backup_action.triggered.connect(lambda: backup_actions.back_up(self))
        self.restore_action = file_menu.addAction("Restore data…")
        self.restore_action.triggered.connect(lambda: backup_actions.restore(self))
        file_menu.addSeparator()
        self.settings_action = file_menu.addAction("Settings…")
        self.settings_action.triggered.connect(self.open_settings)
        quit_action = file_menu.addAction("Quit")
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        tools = menu.addMenu("&Tools")
        self.import_action = tools.addAction("Import labelled photos…")
        self.import_action.triggered.connect(lambda: self.open_get_started())
        self.admin_action = tools.addAction("Review submissions (admin)…")
        self.admin_action.triggered.connect(self.open_admin)
        self.models_action = tools.addAction("Models and training…")
        self.models_action.triggered.connect(self.open_models)
        self.usage_action = tools.addAction("Usage…")
        self.usage_action.triggered.connect(self.open_usage)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.mode_label = QLabel()
        self.model_label = QLabel("Model: …")
        self.counts_label = QLabel()
        self.sync_label = QLabel()
        for widget in (self.mode_label, self.model_label, self.counts_label, self.sync_label):
            bar.addPermanentWidget(widget)
        self.mode_label.setText(self.backend.describe())
        self._refresh_counts()
        self.refresh_sync()

    # Pages and status ----------------------------------------------------------------------
    def _show_page(self) -> None:
        local = self.backend.mode == LOCAL
        for action in (self.import_action, self.backup_action, self.restore_action):
            action.setEnabled(local)  # a server's data is backed up where it runs
        self.get_started_button.setVisible(local)
        if not local:
            self.no_model_page.detail.setText(
                "The edge server has no model yet: an admin trains one there."
            )
        if self.results.rowCount():
            self.pages.setCurrentWidget(self.splitter)
        elif self.champion is None and self._champion_known:
            self.pages.setCurrentWidget(self.no_model_page)
        else:
            self.pages.setCurrentWidget(self.drop_page)

    def refresh_champion(self) -> None:
        run_task(self.backend.champion, self._on_champion, self._on_champion_error)

    def _on_champion(self, champion: ModelSummary | None) -> None:
        self.champion, self._champion_known = champion, True
        self.model_label.setText(
            f"Model v{champion.version} · {champion.backbone}" if champion else "No model yet"
        )
        self._show_page()
        self.champion_changed.emit(champion)

    def _on_champion_error(self, error: BaseException) -> None:
        self.model_label.setText("Model: unavailable")
        self.statusBar().showMessage(str(error), 10_000)

    def _refresh_counts(self, *_args: object) -> None:
        counts = self.results.counts()
        text = f"{counts['classified']} classified"
        if counts["unsure"]:
            text += f" · {counts['unsure']} unsure"
        if counts["errors"]:
            text += f" · {counts['errors']} errors"
        self.counts_label.setText(text)

    def sync_now(self) -> None:
        if self.backend.waiting_to_sync():
            run_task(self.backend.sync, lambda _sent: self.refresh_sync(), lambda _: None)

    def refresh_sync(self) -> None:
        waiting = self.backend.waiting_to_sync()
        self.sync_label.setText(f"{waiting} waiting to sync" if waiting else "")
        self.sync_label.setVisible(bool(waiting))

    def count_usage(self, event: str, count: int = 1) -> None:
        """Usage counting never bothers the user: a failure is only logged."""
        backend = self.backend
        run_task(
            lambda: backend.record_usage(event, count),
            lambda _: None,
            lambda error: log.warning("usage event %r not counted: %s", event, error),
        )

    # Adding photos -------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dragMoveEvent(self, event: QDragEnterEvent) -> None:  # type: ignore[override]
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        # Only record the paths: listing folders and decoding happen off the GUI thread.
        paths = [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]
        if not paths:
            return
        event.acceptProposedAction()
        if self.pages.currentWidget() is self.no_model_page and self.backend.mode == LOCAL:
            self.open_get_started(paths)  # nothing to classify with: these are label folders
        else:
            self.classify_paths(paths)

    def choose_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(
            self,
            "Choose photos",
            self.last_folder(),
            PHOTO_FILTER,
        )
        if files:
            self.remember_folder(Path(files[0]).parent)
            self.classify_paths([Path(name) for name in files])

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a folder", self.last_folder())
        if folder:
            self.remember_folder(Path(folder))
            self.classify_paths([Path(folder)])

    def last_folder(self) -> str:
        return str(self.prefs.value("last_folder", str(Path.home())))

    def remember_folder(self, folder: Path) -> None:
        self.prefs.setValue("last_folder", str(folder))

    def classify_paths(self, paths: list[Path]) -> None:
        """Classify ``paths`` (files or folders) in the background; queued behind a running
        classification."""
        if self.run is not None and self.run.running:
            self.waiting_drops.extend(paths)
            return
        if self.run is not None:
            self.run.deleteLater()  # ended; Qt deletes it, not Python's collector in a cycle
        run = ClassifyRun(self.settings, self.backend.classify, parent=self)
        run.expanded.connect(self._on_expanded)
        run.batch_done.connect(self._on_batch)
        run.progress.connect(self._on_progress)
        run.finished.connect(self._on_run_finished)
        run.failed.connect(self._on_run_failed)
        self.run = run
        self.progress.setRange(0, 0)  # busy until the folders are listed
        self.progress_area.show()
        self.cancel_button.setEnabled(True)
        run.start(paths, skip=self.results.has)

    def cancel(self) -> None:
        if self.run is not None:
            self.run.cancel()
            self.waiting_drops.clear()
            self.cancel_button.setEnabled(False)
            self.statusBar().showMessage("Cancelling after the current batch…")

    def _on_expanded(self, paths: list[Path]) -> None:
        self.results.add_waiting(paths)
        self._show_page()
        if not paths:
            self.statusBar().showMessage("No photos found in what was dropped.", 5000)

    def _on_batch(self, rows: list[PhotoRow]) -> None:
        self.results.update(rows)
        classified = sum(row.state == RowState.DONE for row in rows)
        if classified:
            self.count_usage("photos_classified", classified)

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)

    def _on_run_finished(self, cancelled: bool) -> None:
        if cancelled:
            self.results.mark_cancelled()
            self.statusBar().showMessage("Classification cancelled.", 5000)
        self._end_run()

    def _on_run_failed(self, error: BaseException) -> None:
        self.results.mark_cancelled()
        if isinstance(error, NoChampion):
            self._on_champion(None)
        self.statusBar().showMessage(str(error), 15_000)
        self._end_run()

    def _end_run(self) -> None:
        self.progress_area.hide()
        self._show_page()
        if self.waiting_drops:
            paths, self.waiting_drops = self.waiting_drops, []
            self.classify_paths(paths)

    def sort_by(self, name: str) -> None:
        column, order = SORTS[name]
        self.proxy.sort(-1 if column is None else int(column), order)

    def clear(self) -> None:
        if self.run is not None and self.run.running:
            return
        self.results.clear()
        self._show_page()

    # Submitting ----------------------------------------------------------------------------
    def selected_rows(self) -> list[PhotoRow]:
        indexes = self.grid.selectionModel().selectedIndexes()
        rows = {index.row(): index.data(ROW_ROLE) for index in indexes}
        return [row for row in rows.values() if row is not None]

    def _on_selection(self, *_args: object) -> None:
        rows = self.selected_rows()
        self.submit_panel.show_row(rows[0] if len(rows) == 1 else None)
        self.heatmap.show_row(rows[0] if len(rows) == 1 else None)

    def submit_selected(self, label: str) -> None:
        rows = [row for row in self.selected_rows() if row.state == RowState.DONE]
        if len(rows) != 1:
            return
        row = rows[0]
        self.submit_panel.set_busy(True)
        run_task(
            lambda: self.backend.submit(read_photo_file(row.path), label, source=str(row.path)),
            lambda answer: self._on_submitted(row.path, answer),
            lambda error: self._on_submit_error(row.path, error),
        )

    def _on_submitted(self, path: Path, answer: Submission | Queued) -> None:
        text = describe_submission(answer)
        self.results.set_submitted(path, text)
        self.submit_panel.set_busy(False)
        self.submit_panel.show_answer(text)
        self.refresh_sync()
        self.count_usage("submissions")

    def _on_submit_error(self, path: Path, error: BaseException) -> None:
        self.submit_panel.set_busy(False)
        self.submit_panel.show_answer(f"Not submitted: {error}", error=True)

    # Export --------------------------------------------------------------------------------
    def choose_export(self) -> None:
        target, _ = QFileDialog.getSaveFileName(
            self,
            "Export results",
            str(Path(self.last_folder()) / "classifications.csv"),
            "CSV (*.csv)",
        )
        if target:
            try:
                self.export_csv(Path(target))
            except OSError as exc:
                QMessageBox.warning(self, "Export failed", f"Cannot write {target}: {exc}")

    def export_csv(self, target: Path) -> None:
        """Write every row (in the current sort and filter) to ``target``, atomically."""
        labels = list(self.settings.labels)
        descriptor, temporary = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
        )
        try:
            with os.fdopen(descriptor, "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(
                    [
                        "path",
                        "prediction",
                        "confidence",
                        *(f"p_{label}" for label in labels),
                        "model_version",
                        "unsure",
                        "error",
                    ]
                )
                for position in range(self.proxy.rowCount()):
                    row: PhotoRow = self.proxy.index(position, 0).data(ROW_ROLE)
                    writer.writerow(
                        [
                            str(row.path),
                            row.label or "",
                            "" if row.confidence is None else f"{row.confidence:.4f}",
                            *(
                                f"{row.probabilities[label]:.4f}"
                                if label in row.probabilities
                                else ""
                                for label in labels
                            ),
                            row.model_version or "",
                            "yes" if row.unsure(self.results.unsure_below) else "",
                            row.error or "",
                        ]
                    )
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        self.statusBar().showMessage(f"Exported {self.proxy.rowCount()} rows to {target}", 5000)

    # Other windows -------------------------------------------------------------------------
    def open_settings(self) -> None:
        from desktop.settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.prefs, self)
        if dialog.exec():
            self.switch_backend(open_backend(self.settings, self.prefs))

    def switch_backend(self, backend: Backend) -> None:
        self.backend = backend
        self.mode_label.setText(backend.describe())
        self.refresh_sync()
        self.refresh_champion()

    def open_get_started(self, paths: list[Path] | None = None) -> None:
        from desktop.get_started import open_get_started

        open_get_started(self, paths)

    def apply_labels(self, labels: list[str]) -> None:
        """Show the label set an import saved (the submit panel's and the filter's labels)."""
        self.settings = self.settings.model_copy(update={"labels": tuple(labels)})
        self.submit_panel.set_labels(labels)
        choice = self.filter_box.currentText()
        self.filter_box.clear()
        self.filter_box.addItems([ALL, *labels, UNSURE, ERRORS])
        self.filter_box.setCurrentText(choice if choice in (ALL, *labels, UNSURE, ERRORS) else ALL)

    def _on_weekly_check(self, job: Job) -> None:
        self.statusBar().showMessage("The weekly retrain check is running…")
        job.finished.connect(
            lambda outcome: self._on_weekly_check_done(f"Weekly retrain check: {outcome['reason']}")
        )
        job.failed.connect(
            lambda error: self._on_weekly_check_done(f"The weekly retrain check failed: {error}")
        )

    def _on_weekly_check_done(self, text: str) -> None:
        self.statusBar().showMessage(text, 30_000)
        self.refresh_champion()

    def open_admin(self) -> None:
        from desktop.admin_window import open_admin_window

        open_admin_window(self)

    def open_models(self) -> None:
        from desktop.models_view import open_models_window

        open_models_window(self)

    def open_usage(self) -> None:
        from desktop.usage_dialog import UsageDialog

        UsageDialog(self.backend, self).exec()

    # Layout memory -------------------------------------------------------------------------
    def _restore_layout(self) -> None:
        geometry = self.prefs.value("window/geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        else:
            self.resize(1100, 720)
        state = self.prefs.value("window/state")
        if isinstance(state, QByteArray):
            self.restoreState(state)
        splitter = self.prefs.value("window/splitter")
        if isinstance(splitter, QByteArray):
            self.splitter.restoreState(splitter)
        view = int(str(self.prefs.value("window/view", 0)))
        self.view_buttons.button(view).setChecked(True)
        self.views.setCurrentIndex(view)

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.run is not None:
            self.run.cancel()
        self.prefs.setValue("window/geometry", self.saveGeometry())
        self.prefs.setValue("window/state", self.saveState())
        self.prefs.setValue("window/splitter", self.splitter.saveState())
        self.prefs.setValue("window/view", self.views.currentIndex())
        self.prefs.sync()
        super().closeEvent(event)
