"""The charts of a model: its confusion matrix and its training curves (loss and accuracy per
epoch, training and validation), shared by the models window and the job panel."""

from __future__ import annotations

from PySide6.QtCharts import QChart, QChartView, QLegend, QLineSeries, QValueAxis
from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPalette, QPen
from PySide6.QtWidgets import QWidget

from core.model.metrics import EpochStats

#: The training curves: (series name, EpochStats field, axis, dashed). Validation is dashed.
CURVES = (
    ("training loss", "train_loss", "loss", False),
    ("validation loss", "val_loss", "loss", True),
    ("training accuracy", "train_accuracy", "accuracy", False),
    ("validation accuracy", "val_accuracy", "accuracy", True),
)
CURVE_COLOURS = {"loss": QColor(33, 150, 243), "accuracy": QColor(255, 143, 0)}


class ConfusionMatrix(QWidget):
    """Rows are the true labels, columns the predicted ones; darker means more photos."""

    def __init__(self) -> None:
        super().__init__()
        self.labels: list[str] = []
        self.matrix: list[list[int]] = []
        self.setMinimumSize(260, 220)

    def sizeHint(self) -> QSize:
        return QSize(300, 240)  # two labels fit; the versions table takes the rest of the width

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


def chart_theme(widget: QWidget) -> QChart.ChartTheme:
    """The chart theme matching the widget's palette (the app follows the system's dark mode)."""
    dark = widget.palette().color(QPalette.ColorRole.Window).lightness() < 128
    return QChart.ChartTheme.ChartThemeDark if dark else QChart.ChartTheme.ChartThemeLight


def replace_chart(view: QChartView, chart: QChart) -> None:
    """Show ``chart`` in ``view`` and free the chart it replaces (the view lets go of it)."""
    previous = view.chart()
    view.setChart(chart)
    previous.deleteLater()


def curves_chart(
    version: int | None, history: list[EpochStats], theme: QChart.ChartTheme
) -> QChart:
    """Loss (left axis) and accuracy (right axis) per epoch, training and validation, of
    ``version`` (None: the training running now, its epochs so far)."""
    chart = QChart()
    chart.setTheme(theme)
    if not history:
        chart.setTitle(
            "Training: the curves grow as each epoch ends"
            if version is None
            else f"Version {version}: no curves recorded for this version"
        )
        return chart
    chart.setTitle(
        "Training curves so far" if version is None else f"Version {version}: training curves"
    )
    epochs = QValueAxis()
    epochs.setTitleText("epoch")
    epochs.setLabelFormat("%d")
    epochs.setRange(1, max(2, history[-1].epoch))
    epochs.setTickType(QValueAxis.TickType.TicksDynamic)
    epochs.setTickAnchor(1)
    epochs.setTickInterval(max(1, -(-len(history) // 10)))  # at most about ten labels
    largest_loss = max(max(stats.train_loss, stats.val_loss) for stats in history)
    axes = {"loss": QValueAxis(), "accuracy": QValueAxis()}
    axes["loss"].setTitleText("loss")
    axes["loss"].setRange(0, largest_loss * 1.1 or 1)
    axes["loss"].applyNiceNumbers()
    axes["accuracy"].setTitleText("accuracy")
    axes["accuracy"].setRange(0, 1)
    chart.addAxis(epochs, Qt.AlignmentFlag.AlignBottom)
    chart.addAxis(axes["loss"], Qt.AlignmentFlag.AlignLeft)
    chart.addAxis(axes["accuracy"], Qt.AlignmentFlag.AlignRight)
    for name, field, axis, dashed in CURVES:
        series = QLineSeries()
        series.setName(name)
        for stats in history:
            series.append(stats.epoch, getattr(stats, field))
        series.setPointsVisible(len(history) <= 30)
        chart.addSeries(series)  # before the pen: adding a series applies the theme's colours
        pen = QPen(CURVE_COLOURS[axis], 2)
        if dashed:
            pen.setStyle(Qt.PenStyle.DashLine)
        series.setPen(pen)
        series.attachAxis(epochs)
        series.attachAxis(axes[axis])
    chart.legend().setAlignment(Qt.AlignmentFlag.AlignBottom)
    chart.legend().setMarkerShape(QLegend.MarkerShape.MarkerShapeFromSeries)
    return chart
