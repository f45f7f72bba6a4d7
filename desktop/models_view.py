"""Models and training: the versions, the champion, promote/rollback, retrain, and plots of
the selected version (confusion matrix, per-label scores, per-epoch training curves).

Retrain now goes to a worker when one serves the queue (the edge server's in remote mode);
otherwise it runs in a child process of the app, followed by a :class:`~desktop.jobs.JobPanel`
(steps, live curves, Cancel). Errors show in the window, never in a modal box."""

from __future__ import annotations

from typing import Any

from PySide6.QtCharts import (
    QBarCategoryAxis,
    QBarSeries,
    QBarSet,
    QChart,
    QChartView,
    QValueAxis,
)
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.errors import AuthError
from core.model.metrics import CALIBRATION_KEY, epoch_history
from core.wire import ModelState, ModelSummary, RetrainOutcome
from desktop.backends import Backend
from desktop.backends.local import ADMIN_ACTOR
from desktop.charts import ConfusionMatrix, chart_theme, curves_chart, replace_chart
from desktop.job_process import RETRAIN
from desktop.jobs import Job, JobPanel
from desktop.sign_in import sign_in
from desktop.tasks import run_task

COLUMNS = ("Version", "State", "Backbone", "Accuracy", "Macro F1", "ROC-AUC", "ECE", "Created")
RETRAIN_POLL_MS = 3000


def _number(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "–"


# Model quality (issue 16): what the selected version knows of its own answers. -------------
def calibration_text(model: ModelSummary) -> str:
    """The calibration stored with ``model``, in words."""
    calibration = model.metrics.get(CALIBRATION_KEY)
    if not calibration:
        return (
            f"Version {model.version} was trained before calibration: unsure below the "
            "setting unsure_below, and no out-of-distribution check. Retrain to get both."
        )
    return (
        f"Version {model.version}: unsure below {calibration['unsure_below']:.0%} confidence "
        f"(validation answers above it are right at least "
        f"{calibration['target_accuracy']:.0%} of the time); temperature "
        f"{calibration['temperature']:.2f}; out of distribution beyond a distance of "
        f"{calibration['ood_threshold']:.3f} from its {calibration['ood_neighbours']} nearest "
        f"of {calibration['ood_bank_size']} training photos."
    )


class ModelsWindow(QMainWindow):
    def __init__(self, backend: Backend, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.backend = backend
        self.models: list[ModelSummary] = []
        self.retrain_task: str | None = None  # a worker's task
        self.job: Job | None = None  # a retrain in a child process of this app
        self.setWindowTitle("Models and training")
        self.resize(1000, 700)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.itemSelectionChanged.connect(self._show_selected)

        self.promote_button = QPushButton("Promote selected")
        self.promote_button.clicked.connect(self.promote_selected)
        self.rollback_button = QPushButton("Roll back")
        self.rollback_button.clicked.connect(self.rollback)
        self.retrain_button = QPushButton("Retrain now")
        self.retrain_button.clicked.connect(self.retrain)
        buttons = QHBoxLayout()
        for button in (self.promote_button, self.rollback_button, self.retrain_button):
            buttons.addWidget(button)
        buttons.addStretch()

        self.confusion = ConfusionMatrix()
        self.scores = QChartView()
        self.scores.setMinimumSize(300, 260)
        self.curves = QChartView()
        self.curves.setMinimumSize(420, 260)
        for view in (self.scores, self.curves):
            view.setRenderHint(QPainter.RenderHint.Antialiasing)

        # Versions and the confusion matrix on top, the two charts side by side below them.
        versions = QWidget()
        versions_layout = QVBoxLayout(versions)
        versions_layout.addWidget(self.table)
        versions_layout.addLayout(buttons)
        self.calibration = QLabel()  # model quality: the selected version's calibration
        self.calibration.setWordWrap(True)
        versions_layout.addWidget(self.calibration)
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #d32f2f;")
        self.error_label.hide()
        versions_layout.addWidget(self.error_label)
        self.job_panel = JobPanel()
        self.job_panel.hide()
        versions_layout.addWidget(self.job_panel)
        self.table.setMinimumSize(420, 120)
        top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(versions)
        top.addWidget(self.confusion)
        top.setStretchFactor(0, 1)
        top.setStretchFactor(1, 0)
        charts = QSplitter(Qt.Orientation.Horizontal)
        charts.addWidget(self.scores)
        charts.addWidget(self.curves)
        charts.setStretchFactor(0, 2)
        charts.setStretchFactor(1, 3)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(top)
        splitter.addWidget(charts)
        splitter.setStretchFactor(1, 1)
        for part in (top, charts, splitter):
            part.setChildrenCollapsible(False)
        self.setCentralWidget(splitter)
        # The worker reports no steps, so the bar only shows that the retrain is under way.
        self.retrain_progress = QProgressBar()
        self.retrain_progress.setMaximumWidth(160)
        self.retrain_progress.setTextVisible(False)
        self.retrain_progress.setRange(0, 0)
        self.retrain_progress.hide()
        self.statusBar().addPermanentWidget(self.retrain_progress)
        self.poll = QTimer(self, interval=RETRAIN_POLL_MS)
        self.poll.timeout.connect(self._poll_retrain)
        self.reload()

    def reload(self) -> None:
        run_task(self.backend.versions, self._on_versions, self._on_versions_error)

    def _on_versions_error(self, error: BaseException) -> None:
        """An edge server lists its versions to admins only: ask for the token, then retry."""
        if isinstance(error, AuthError) and not self.backend.admin_signed_in and self._admin():
            self.reload()
        else:
            self._on_error(error)

    def _on_versions(self, models: list[ModelSummary]) -> None:
        self.models = sorted(models, key=lambda m: m.version, reverse=True)
        self.table.setRowCount(len(self.models))
        for row, model in enumerate(self.models):
            champion = model.state == ModelState.CHAMPION
            values = (
                str(model.version),
                "★ champion" if champion else str(model.state),
                model.backbone,
                _number(model.metrics.get("accuracy")),
                _number(model.metrics.get("macro_f1")),
                _number(model.metrics.get("roc_auc")),
                _number(model.metrics.get("ece")),
                model.created_at.strftime("%Y-%m-%d %H:%M"),
            )
            for column, value in enumerate(values):
                item = QTableWidgetItem(value)
                if champion:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                self.table.setItem(row, column, item)
        if self.models and not self.table.selectedItems():
            self.table.selectRow(0)
        self._show_selected()

    def selected(self) -> ModelSummary | None:
        rows = {index.row() for index in self.table.selectedIndexes()}
        return self.models[rows.pop()] if len(rows) == 1 else None

    def _show_selected(self) -> None:
        model = self.selected()
        if model is None:
            return
        metrics = model.metrics
        self.calibration.setText(calibration_text(model))
        self.confusion.show_matrix(
            list(metrics.get("labels", model.labels)), metrics.get("confusion_matrix", [])
        )
        chart = QChart()
        chart.setTitle(f"Version {model.version}: validation scores per label")
        series = QBarSeries()
        per_label = metrics.get("per_label", {})
        for score in ("precision", "recall", "f1"):
            bars = QBarSet(score)
            bars.append([float(per_label.get(label, {}).get(score, 0.0)) for label in model.labels])
            series.append(bars)
        chart.addSeries(series)
        categories = QBarCategoryAxis()
        categories.append(model.labels)
        values = QValueAxis()
        values.setRange(0, 1)
        chart.addAxis(categories, Qt.AlignmentFlag.AlignBottom)
        chart.addAxis(values, Qt.AlignmentFlag.AlignLeft)
        series.attachAxis(categories)
        series.attachAxis(values)
        chart.setTheme(chart_theme(self))
        replace_chart(self.scores, chart)
        history = epoch_history(metrics)
        replace_chart(self.curves, curves_chart(model.version, history, chart_theme(self)))

    # Admin actions -------------------------------------------------------------------------
    def _admin(self) -> bool:
        return sign_in(self.backend, self)

    def promote_selected(self) -> None:
        model = self.selected()
        if model is None or not self._admin():
            return
        version = model.version
        run_task(lambda: self.backend.promote(version), self._on_changed, self._on_error)

    def rollback(self) -> None:
        if self._admin():
            run_task(self.backend.rollback, self._on_changed, self._on_error)

    def _on_changed(self, champion: ModelSummary) -> None:
        self.statusBar().showMessage(f"Version {champion.version} is the champion now.", 8000)
        self.reload()
        self._refresh_main()

    def _refresh_main(self) -> None:
        parent = self.parent()
        if parent is not None and hasattr(parent, "refresh_champion"):
            parent.refresh_champion()

    @property
    def retraining(self) -> bool:
        return self.retrain_task is not None or (self.job is not None and self.job.running)

    def retrain(self) -> None:
        if self.retraining or not self._admin():
            return
        self.retrain_button.setEnabled(False)
        self.error_label.hide()
        run_task(self.backend.jobs_run_here, self._start_retrain, self._on_retrain_error)

    def _start_retrain(self, here: bool) -> None:
        if not here:
            self.retrain_progress.show()
            self.statusBar().showMessage("Asking the worker to retrain…")
            run_task(self.backend.retrain, self._on_enqueued, self._on_retrain_error)
            return
        job = Job(RETRAIN, self.backend.settings, True, actor=ADMIN_ACTOR, parent=self)
        job.finished.connect(
            lambda outcome: self._on_retrain_result(RetrainOutcome.from_dict(outcome))
        )
        job.failed.connect(self._on_retrain_error)
        self.job = job
        self.job_panel.follow(job, "Retraining on this computer (no worker serves the queue)")
        self.job_panel.show()
        self.statusBar().showMessage("Retraining on this computer…")
        job.start()

    def _on_enqueued(self, task_id: str) -> None:
        self.retrain_task = task_id
        self.statusBar().showMessage(
            f"Retrain queued (task {task_id[:8]}); a running `classifi worker` carries it out."
        )
        self.poll.start()

    def _poll_retrain(self) -> None:
        task = self.retrain_task
        if task is not None:
            run_task(
                lambda: self.backend.retrain_result(task),
                self._on_retrain_result,
                self._on_retrain_error,
            )

    def _on_retrain_result(self, result: RetrainOutcome | None) -> None:
        if result is None:
            return
        self._retrain_over()
        self.statusBar().showMessage(f"Retrain finished: {result.reason}", 15_000)
        self.reload()
        self._refresh_main()

    def _on_retrain_error(self, error: BaseException) -> None:
        self._retrain_over()
        self._on_error(error)

    def _retrain_over(self) -> None:
        self.poll.stop()
        self.retrain_task = None
        self.job = None
        self.job_panel.hide()
        self.retrain_progress.hide()
        self.retrain_button.setEnabled(True)

    def _on_error(self, error: BaseException) -> None:
        self.statusBar().showMessage(str(error), 15_000)
        self.error_label.setText(str(error))
        self.error_label.show()


def open_models_window(main: Any) -> ModelsWindow:
    window = getattr(main, "models_window", None)
    if window is None or window.backend is not main.backend:
        window = ModelsWindow(main.backend, main)
        main.models_window = window
    window.show()
    window.raise_()
    return window
