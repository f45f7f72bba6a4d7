"""Long jobs (an import and its training, a retrain) in a child process, and the panel that
follows one: photos stored n/N, embedded n/N, epoch k/E, the training curves as they grow,
and Cancel.

The child (:mod:`desktop.job_process`) reports through a queue that a timer on the GUI thread
drains, so the window never waits on it. A job that ignores Cancel for
:data:`CANCEL_GRACE_S` is stopped with SIGTERM (which cancels at its next Python
instruction), then killed; even then the journalled retrain and the training's cleanup leave
nothing half-made for the next run.
"""

from __future__ import annotations

import multiprocessing
import queue
from typing import Any

from PySide6.QtCharts import QChartView
from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from core.config import Settings
from core.errors import ServerError, rebuild_error
from core.model.metrics import EpochStats
from desktop.charts import chart_theme, curves_chart, replace_chart
from desktop.job_process import child_main

POLL_MS = 100
CANCEL_GRACE_S = 20.0
KILL_GRACE_S = 5.0
#: What each progress stage counts, for the panel's rows.
STAGES = {"store": "Photos stored", "embed": "Photos embedded", "train": "Epochs"}


class Job(QObject):
    """One job in a spawned child process; its reports arrive as signals on the GUI thread."""

    progress = Signal(str, int, int)  # stage, done, total
    epoch = Signal(object)  # EpochStats
    finished = Signal(object)  # the job's result (plain data)
    failed = Signal(object)  # a ClassifiError

    def __init__(
        self,
        kind: str,
        settings: Settings,
        argument: Any,
        *,
        actor: str,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.kind = kind
        self._arguments = (kind, settings, argument, actor)
        context = multiprocessing.get_context("spawn")  # never fork a process running Qt
        self._events = context.Queue()
        self._cancel = context.Event()
        self._process = context.Process(
            target=child_main,
            args=(*self._arguments, self._events, self._cancel),
            name=f"classifi-{kind}",
            daemon=True,  # ended (SIGTERM: cancelled) if the app exits first
        )
        self._timer = QTimer(self, interval=POLL_MS)
        self._timer.timeout.connect(self._drain)
        self._over = False
        self.cancelled = False

    @property
    def running(self) -> bool:
        return self._process.is_alive() or (self._timer.isActive() and not self._over)

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def start(self) -> None:
        self._process.start()
        self._timer.start()

    def cancel(self) -> None:
        """Ask the job to stop and undo what it began; stop it harder if it does not."""
        if self._over or self.cancelled:
            return
        self.cancelled = True
        self._cancel.set()
        QTimer.singleShot(int(CANCEL_GRACE_S * 1000), self._terminate)

    def _terminate(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
            QTimer.singleShot(int(KILL_GRACE_S * 1000), self._kill)

    def _kill(self) -> None:
        if self._process.is_alive():
            self._process.kill()

    def _drain(self) -> None:
        while not self._over:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            self._handle(event)
        if not self._over and not self._process.is_alive():
            try:  # the last reports may still be in the pipe
                self._handle(self._events.get(timeout=1.0))
            except queue.Empty:
                self._end()
                self.failed.emit(
                    ServerError(
                        f"The {self.kind} stopped unexpectedly (exit code "
                        f"{self._process.exitcode}); nothing half-made was kept. Try again."
                    )
                )

    def _handle(self, event: tuple[Any, ...]) -> None:
        name, *values = event
        if name == "progress":
            self.progress.emit(*values)
        elif name == "epoch":
            self.epoch.emit(EpochStats(**values[0]))
        elif name == "done":
            self._end()
            self.finished.emit(values[0])
        elif name == "failed":
            self._end()
            self.failed.emit(rebuild_error(*values))

    def _end(self) -> None:
        self._over = True
        self._timer.stop()
        self._process.join(timeout=5)


class JobPanel(QWidget):
    """Follows a job: a bar per stage, the training curves, and Cancel."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel()
        font = self.title.font()
        font.setPointSizeF(font.pointSizeF() * 1.3)
        self.title.setFont(font)
        self.bars: dict[str, QProgressBar] = {}
        form = QFormLayout()
        for stage, name in STAGES.items():
            bar = QProgressBar()
            bar.setFormat("%v of %m")
            bar.setRange(0, 1)
            bar.setValue(0)
            self.bars[stage] = bar
            form.addRow(name, bar)
        self.history: list[EpochStats] = []
        self.curves = QChartView()
        self.curves.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.curves.setMinimumSize(420, 260)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.job: Job | None = None
        buttons = QHBoxLayout()
        buttons.addWidget(self.status, 1)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addLayout(form)
        layout.addWidget(self.curves, 1)
        layout.addLayout(buttons)

    def follow(self, job: Job, title: str) -> None:
        """Show ``job``'s progress from now on (the bars and curves start empty)."""
        self.job = job
        self.title.setText(title)
        self.status.setText("Starting…")
        self.history = []
        for bar in self.bars.values():
            bar.setRange(0, 1)
            bar.setValue(0)
        self._show_curves()
        self.cancel_button.setEnabled(True)
        job.progress.connect(self._on_progress)
        job.epoch.connect(self._on_epoch)

    def cancel(self) -> None:
        if self.job is None:
            return
        self.job.cancel()
        self.cancel_button.setEnabled(False)
        self.status.setText("Cancelling: what was begun is being undone…")

    def _on_progress(self, stage: str, done: int, total: int) -> None:
        bar = self.bars.get(stage)
        if bar is not None:
            bar.setRange(0, max(total, 1))
            bar.setValue(done if total else 1)
        if not self.cancel_button.isEnabled():
            return
        self.status.setText(f"{STAGES.get(stage, stage)}: {done} of {total}")

    def _on_epoch(self, stats: EpochStats) -> None:
        self.history.append(stats)
        self._show_curves()

    def _show_curves(self) -> None:
        replace_chart(self.curves, curves_chart(None, self.history, chart_theme(self)))
