"""Preferences: local or remote mode, the edge server's URL and API key."""

from __future__ import annotations

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from desktop.backends import DEFAULT_SERVER_URL, LOCAL, REMOTE


class SettingsDialog(QDialog):
    """Edits the preferences; they take effect when the dialog is accepted."""

    def __init__(self, prefs: QSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.prefs = prefs
        self.setWindowTitle("Settings")
        self.local = QRadioButton("Local: work on this computer's data, no server needed")
        self.remote = QRadioButton("Remote: connect to an edge server")
        modes = QButtonGroup(self)
        modes.addButton(self.local)
        modes.addButton(self.remote)
        self.url = QLineEdit(str(prefs.value("server/url", DEFAULT_SERVER_URL)))
        self.url.setPlaceholderText("http://server:8000")
        self.api_key = QLineEdit(str(prefs.value("server/api_key", "")))
        self.api_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.api_key.setPlaceholderText("only if the server asks for one")
        note = QLabel(
            "The admin token is asked for when you open the review window, and is kept only "
            "while the app runs."
        )
        note.setWordWrap(True)

        server = QWidget()
        form = QFormLayout(server)
        form.addRow("Server URL", self.url)
        form.addRow("API key", self.api_key)
        form.addRow(note)

        (self.remote if prefs.value("mode", LOCAL) == REMOTE else self.local).setChecked(True)
        server.setEnabled(self.remote.isChecked())
        self.remote.toggled.connect(server.setEnabled)

        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        for widget in (self.local, self.remote, server, buttons):
            layout.addWidget(widget)

    def accept(self) -> None:
        self.prefs.setValue("mode", REMOTE if self.remote.isChecked() else LOCAL)
        self.prefs.setValue("server/url", self.url.text().strip().rstrip("/"))
        self.prefs.setValue("server/api_key", self.api_key.text().strip())
        self.prefs.sync()
        super().accept()
