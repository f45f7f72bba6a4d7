"""The two ways the desktop reaches the product, behind one :class:`Backend`.

- :class:`LocalBackend` runs the use cases in this process (:class:`core.app.App`).
- :class:`RemoteBackend` calls an edge server (:class:`core.app.remote.RemoteApp`);
  submissions wait in an outbox while the server cannot take them.

Both answer with the same wire models, so every window works in either mode.
"""

from __future__ import annotations

from PySide6.QtCore import QSettings

from core.config import Settings
from desktop.backends.base import (
    CLIENT,
    LOCAL,
    QUEUED,
    REMOTE,
    Backend,
    Queued,
    describe_submission,
)
from desktop.backends.local import LocalBackend
from desktop.backends.remote import RemoteBackend

DEFAULT_SERVER_URL = "http://127.0.0.1:8000"


def open_backend(settings: Settings, prefs: QSettings) -> Backend:
    """The backend the preferences choose (local unless a server URL is set to be used)."""
    if prefs.value("mode", LOCAL) == REMOTE:
        return RemoteBackend(
            settings,
            url=str(prefs.value("server/url", DEFAULT_SERVER_URL)),
            api_key=str(prefs.value("server/api_key", "")) or None,
        )
    from desktop.app import shipped_model

    return LocalBackend(settings, shipped_model=shipped_model())


__all__ = [
    "CLIENT",
    "DEFAULT_SERVER_URL",
    "LOCAL",
    "QUEUED",
    "REMOTE",
    "Backend",
    "LocalBackend",
    "Queued",
    "RemoteBackend",
    "describe_submission",
    "open_backend",
]
