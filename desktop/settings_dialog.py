"""Preferences: local or remote mode, the edge server's URL and its device key.

In remote mode the key box takes a device key or the short pairing code that
``classifi keys pair`` shows on the server: Save trades a code for a key of this computer's
own, and checks a key with the server, before anything is kept. A key the server refuses
keeps the dialog open with the server's reason; a server that does not answer now is no
reason to refuse a key (submissions wait in the outbox meanwhile).
"""

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

from core.errors import ClassifiError
from desktop.backends import DEFAULT_SERVER_URL, LOCAL, REMOTE
from desktop.backends.remote import usable_key
from desktop.tasks import run_task


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
        self.api_key.setPlaceholderText("a device key, or a pairing code such as K7QM-X3PD")
        note = QLabel(
            "Off its own computer the server asks for a key: its admin makes one with "
            "`classifi keys create`, or shows a pairing code with `classifi keys pair` to "
            "type here. The admin token is asked for when you open the review window, and is "
            "kept only while the app runs."
        )
        note.setWordWrap(True)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #d32f2f;")  # as the sign-in dialog's
        self.error.hide()

        server = QWidget()
        form = QFormLayout(server)
        form.addRow("Server URL", self.url)
        form.addRow("Key or pairing code", self.api_key)
        form.addRow(note)

        (self.remote if prefs.value("mode", LOCAL) == REMOTE else self.local).setChecked(True)
        server.setEnabled(self.remote.isChecked())
        self.remote.toggled.connect(server.setEnabled)

        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        for widget in (self.local, self.remote, server, self.error, self.buttons):
            layout.addWidget(widget)

    def server_url(self) -> str:
        return self.url.text().strip().rstrip("/")

    def accept(self) -> None:
        secret = self.api_key.text().strip()
        if not (self.remote.isChecked() and secret):
            self._save(secret)
            return
        # Asking the server takes a network round trip: off the GUI thread.
        self.buttons.setEnabled(False)
        self.error.setText("Asking the server…")
        self.error.show()
        url = self.server_url()
        run_task(lambda: usable_key(url, secret), self._save, self._refused)

    def _refused(self, error: BaseException) -> None:
        if not isinstance(error, ClassifiError):
            raise error  # a bug: the task runner logs it
        self.buttons.setEnabled(True)
        self.error.setText(str(error))  # a refused key or code, or no server to pair with
        self.error.show()

    def _save(self, key: str) -> None:
        self.prefs.setValue("mode", REMOTE if self.remote.isChecked() else LOCAL)
        self.prefs.setValue("server/url", self.server_url())
        self.prefs.setValue("server/api_key", key)
        self.prefs.sync()
        super().accept()
