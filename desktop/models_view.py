"""Models and training: the versions, the champion, promote/rollback, retrain, and plots of
the selected version's validation results (confusion matrix, per-label scores)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCharts import QBarCategoryAxis, QBarSeries, QBarSet, QChart, QChartView, QValueAxis
from PySide6.QtCore import QRectF, Qt, QTimer
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.loop.models_admin import ModelSummary
from core.registry import ModelState
from desktop.backends import Backend
from desktop.tasks import run_task

COLUMNS = ("Version", "State", "Backbone", "Accuracy", "Macro F1", "ROC-AUC", "ECE", "Created")
RETRAIN_POLL_MS = 3000


def _number(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "–"


class ConfusionMatrix(QWidget):
    """Rows are the true labels, columns the predicted ones; darker means more photos."""

    def __init__(self) -> None:
        super().__init__()
        self.labels: list[str] = []
        self.matrix: list[list[int]] = []
        self.setMinimumSize(260, 220)

    def show_matrix(self, labels: list[str], matrix: list[list[int]]) -> None:
        self.labels, self.matrix = labels, matrix
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        text = self.palette().color(QPalette.ColorRole.WindowText)
        painter.setPen(text)
        if not self.matrix:
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "No confusion matrix")
            return
        n = len(self.labels)
        margin = 80.0
        side = min(self.width() - margin - 10, self.height() - margin - 10) / n
        largest = max(max(row) for row in self.matrix) or 1
        painter.drawText(QRectF(margin, 0, side * n, 20), Qt.AlignmentFlag.AlignCenter, "predicted")
        for i, label in enumerate(self.labels):
            painter.drawText(
                QRectF(margin + i * side, 20, side, 20), Qt.AlignmentFlag.AlignCenter, label
            )
            painter.drawText(
                QRectF(0, 40 + i * side, margin - 6, side),
                Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                label,
            )
        for i, row in enumerate(self.matrix):
            for j, count in enumerate(row):
                cell = QRectF(margin + j * side, 40 + i * side, side - 2, side - 2)
                strength = count / largest
                good = i == j
                color = QColor(46, 125, 50) if good else QColor(198, 40, 40)
                color.setAlphaF(0.15 + 0.85 * strength)
                painter.fillRect(cell, color)
                painter.setPen(QColor(255, 255, 255) if strength > 0.5 else text)
                painter.drawText(cell, Qt.AlignmentFlag.AlignCenter, str(count))
        painter.setPen(text)
        painter.drawText(
            QRectF(0, 40 + n * side, margin + n * side, 20), Qt.AlignmentFlag.AlignCenter, "true ↑"
        )


class ModelsWindow(QMainWindow):
    def __init__(self, backend: Backend, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.backend = backend
        self.models: list[ModelSummary] = []
        self.retrain_task: str | None = None
        self.setWindowTitle("Models and training")
        self.resize(1000, 600)

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
        self.scores.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.scores.setMinimumHeight(220)
        plots = QWidget()
        plots_layout = QVBoxLayout(plots)
        plots_layout.addWidget(self.confusion)
        plots_layout.addWidget(self.scores)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(self.table)
        left_layout.addLayout(buttons)
        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(plots)
        splitter.setStretchFactor(0, 1)
        self.setCentralWidget(splitter)
        self.statusBar()
        self.poll = QTimer(self, interval=RETRAIN_POLL_MS, timeout=self._poll_retrain)
        self.reload()

    def reload(self) -> None:
        run_task(self.backend.versions, self._on_versions, self._on_error)

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
        chart.setTheme(
            QChart.ChartTheme.ChartThemeDark
            if self.palette().color(QPalette.ColorRole.Window).lightness() < 128
            else QChart.ChartTheme.ChartThemeLight
        )
        self.scores.setChart(chart)

    # Admin actions -------------------------------------------------------------------------
    def _admin(self) -> bool:
        from desktop.admin_window import sign_in

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
        parent = self.parent()
        if parent is not None and hasattr(parent, "refresh_champion"):
            parent.refresh_champion()

    def retrain(self) -> None:
        if self.retrain_task is not None or not self._admin():
            return
        self.retrain_button.setEnabled(False)
        self.statusBar().showMessage("Asking the worker to retrain…")
        run_task(self.backend.retrain, self._on_enqueued, self._on_retrain_error)

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

    def _on_retrain_result(self, result: dict[str, Any] | None) -> None:
        if result is None:
            return
        self.poll.stop()
        self.retrain_task = None
        self.retrain_button.setEnabled(True)
        self.statusBar().showMessage(f"Retrain finished: {result.get('reason', result)}", 15_000)
        self.reload()

    def _on_retrain_error(self, error: BaseException) -> None:
        self.poll.stop()
        self.retrain_task = None
        self.retrain_button.setEnabled(True)
        self._on_error(error)

    def _on_error(self, error: BaseException) -> None:
        self.statusBar().showMessage(str(error), 15_000)
        QMessageBox.warning(self, "Models", str(error))


def open_models_window(main: Any) -> ModelsWindow:
    window = getattr(main, "models_window", None)
    if window is None or window.backend is not main.backend:
        window = ModelsWindow(main.backend, main)
        main.models_window = window
    window.show()
    window.raise_()
    return window
