"""The admin sign-in: the local admin password (chosen at first use) or the edge server's
admin token, checked off the GUI thread."""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit, QWidget

from core.errors import ClassifiError
from desktop.backends import LOCAL, Backend
from desktop.tasks import wait_for


class PasswordDialog(QDialog):
    """Asks for the admin secret: the local password (chosen at first use) or the token."""

    def __init__(self, title: str, prompt: str, *, confirm: bool, parent: QWidget | None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.secret = QLineEdit()
        self.secret.setEchoMode(QLineEdit.EchoMode.Password)
        self.again = QLineEdit()
        self.again.setEchoMode(QLineEdit.EchoMode.Password)
        self.error = QLabel()
        self.error.setStyleSheet("color: #d32f2f;")
        form = QFormLayout(self)
        intro = QLabel(prompt)
        intro.setWordWrap(True)
        form.addRow(intro)
        form.addRow("Password" if confirm else "Secret", self.secret)
        if confirm:
            form.addRow("Again", self.again)
        self.confirm = confirm
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(self.error)
        form.addRow(buttons)

    def accept(self) -> None:
        if self.confirm and self.secret.text() != self.again.text():
            self.error.setText("The two entries differ.")
            return
        super().accept()


def sign_in(backend: Backend, parent: QWidget) -> bool:
    """Make sure the backend holds admin credentials, asking for them if needed."""
    if backend.admin_signed_in:
        return True
    first_use = backend.needs_admin_password_choice()
    if first_use:
        dialog = PasswordDialog(
            "Choose the admin password",
            "Reviewing submissions and changing models needs an admin password. Choose one "
            "now (at least 8 characters); it is stored only as a salted hash.",
            confirm=True,
            parent=parent,
        )
    elif backend.mode == LOCAL:
        dialog = PasswordDialog(
            "Admin sign-in", "Enter the admin password.", confirm=False, parent=parent
        )
    else:
        dialog = PasswordDialog(
            "Admin sign-in",
            "Enter the edge server's admin token (shown once when the server first started; "
            "`classifi admin-token reset` makes a new one).",
            confirm=False,
            parent=parent,
        )
    while dialog.exec():
        secret = dialog.secret.text()

        def check(secret: str = secret) -> None:
            if first_use:
                backend.choose_admin_password(secret)
            backend.sign_in(secret)

        error = wait_for(check)  # a server round trip, or scrypt: off the GUI thread
        if error is None:
            return True
        if not isinstance(error, ClassifiError):
            raise error
        dialog.error.setText(str(error))  # a wrong secret, or a server that does not answer
    return False
