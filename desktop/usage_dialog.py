"""Usage counts: sessions, photos classified, submissions and reviews."""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QFormLayout, QLabel, QWidget

from desktop.backends import LOCAL, Backend
from desktop.tasks import run_task

EVENTS = {
    "session": "Sessions",
    "photos_classified": "Photos classified",
    "submissions": "Submissions",
    "reviews": "Reviews",
}


class UsageDialog(QDialog):
    """Counted in the registry (local mode) or by the edge server's metrics (remote)."""

    def __init__(self, backend: Backend, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Usage")
        self.form = QFormLayout(self)
        self.values = {event: QLabel("…") for event in EVENTS}
        for event, title in EVENTS.items():
            self.form.addRow(title, self.values[event])
        where = "this computer's registry" if backend.mode == LOCAL else backend.describe()
        self.form.addRow(QLabel(f"Counted in {where}."))
        run_task(backend.usage, self._show, lambda error: self.form.addRow(QLabel(str(error))))

    def _show(self, counts: dict[str, int]) -> None:
        for event, label in self.values.items():
            label.setText(str(counts.get(event, 0)))
