"""The side panel of the classify view: the selected photo, and "Submit with label"."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QComboBox, QLabel, QPushButton, QVBoxLayout, QWidget

from desktop.results import PhotoRow, RowState


class SubmitPanel(QWidget):
    """Shows one photo's prediction; submits it with the predicted or another label."""

    submit_requested = Signal(str)  # the chosen label

    def __init__(self, labels: tuple[str, ...]) -> None:
        super().__init__()
        self.setMinimumWidth(240)
        self.setMaximumWidth(360)
        layout = QVBoxLayout(self)
        self.preview = QLabel("Select a photo to see it here.")
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumHeight(200)
        self.preview.setWordWrap(True)
        self.name = QLabel()
        self.name.setWordWrap(True)
        self.prediction = QLabel()
        self.prediction.setWordWrap(True)
        self.label_box = QComboBox()
        self.label_box.addItems(list(labels))
        self.submit_button = QPushButton("Submit with label")
        self.submit_button.setToolTip(
            "Send this photo with the chosen label for review; an admin validates it before "
            "it is used for training."
        )
        self.submit_button.clicked.connect(
            lambda: self.submit_requested.emit(self.label_box.currentText())
        )
        self.answer = QLabel()
        self.answer.setWordWrap(True)
        for widget in (
            self.preview,
            self.name,
            self.prediction,
            QLabel("Label to submit:"),
            self.label_box,
            self.submit_button,
            self.answer,
        ):
            layout.addWidget(widget)
        layout.addStretch()
        self.show_row(None)

    def show_row(self, row: PhotoRow | None) -> None:
        self.answer.clear()
        usable = row is not None and row.state == RowState.DONE
        self.label_box.setEnabled(usable)
        self.submit_button.setEnabled(usable)
        if row is None:
            self.preview.setPixmap(QPixmap())
            self.preview.setText("Select a photo to see it here.")
            self.name.clear()
            self.prediction.clear()
            return
        self.name.setText(row.path.name)
        if row.thumbnail is not None:
            self.preview.setPixmap(
                QPixmap.fromImage(row.thumbnail).scaled(
                    220,
                    200,
                    Qt.AspectRatioMode.KeepAspectRatio,
                    Qt.TransformationMode.SmoothTransformation,
                )
            )
        else:
            self.preview.setPixmap(QPixmap())
            self.preview.setText("")
        if row.state == RowState.ERROR:
            self.prediction.setText(f"Error: {row.error}")
        elif row.label is not None and row.confidence is not None:
            probabilities = ", ".join(f"{k} {v:.0%}" for k, v in row.probabilities.items())
            self.prediction.setText(
                f"Predicted <b>{row.label}</b> at {row.confidence:.0%}<br>{probabilities}"
            )
            self.label_box.setCurrentText(row.label)
        else:
            self.prediction.setText("Not classified yet.")
        if row.submitted:
            self.answer.setText(row.submitted)

    def set_labels(self, labels: list[str]) -> None:
        self.label_box.clear()
        self.label_box.addItems(labels)

    def set_busy(self, busy: bool) -> None:
        self.submit_button.setEnabled(not busy)
        if busy:
            self.answer.setText("Submitting…")

    def show_answer(self, text: str, *, error: bool = False) -> None:
        self.answer.setText(text)
        self.answer.setStyleSheet("color: #d32f2f;" if error else "")
