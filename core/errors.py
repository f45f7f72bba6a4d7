"""The project's exceptions: the one errors module.

Every error a user can meet is one of these. Each message names the problem and, where there
is one, the fix. Each class carries its stable ``code`` and its HTTP ``status`` (as
datasette's errors do), so the edge server's error handler and the remote client share one
table, :func:`error_class`, instead of two hand-written ones. An instance may carry a more
precise code from its class's ``codes`` (e.g. ``InvalidImage`` with ``code="corrupt"``).
"""

from __future__ import annotations

import re
from typing import ClassVar


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class ClassifiError(Exception):
    """Base class of every error the application raises on purpose."""

    #: The stable machine-readable code (the class name in snake_case unless set).
    code: str = "classifi_error"
    #: The HTTP status the edge server answers with.
    status: ClassVar[int] = 500
    #: Other codes an instance may carry; each names a more precise reason.
    codes: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "code" not in cls.__dict__:
            cls.code = _snake(cls.__name__)

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            if code != type(self).code and code not in self.codes:
                raise ValueError(f"{type(self).__name__} has no code {code!r}")
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class ConfigError(ClassifiError):
    """A setting is unknown, malformed or inconsistent."""


class BadRequest(ClassifiError):
    """A request that is malformed for the API (missing field, wrong JSON, too many files)."""

    status = 400
    codes = (
        "missing_field",
        "invalid_json",
        "invalid_action",
        "invalid_ids",
        "invalid_event",
        "invalid_count",
        "too_many_files",
        "invalid_name",
    )


class InvalidImage(ClassifiError):
    """The bytes are not a usable photo (corrupt, not an image, too large, too small)."""

    status = 400
    codes: ClassVar[tuple[str, ...]] = ("empty", "corrupt", "too_small", "unreadable")


class UnsupportedMediaType(InvalidImage):
    """The content is not an image format we decode (judged by content, not by name)."""

    code = "unsupported_type"
    status = 415
    codes = ()


class ImageTooLarge(InvalidImage):
    """The file or its pixel count is above the configured limit (a pixel bomb included:
    the count is read from the header, before decoding)."""

    code = "too_large"
    status = 413
    codes = ()


class UnknownLabel(ClassifiError):
    """A label that is not in the configured label set."""

    status = 400


class NotFound(ClassifiError):
    """A photo, object or model version that does not exist."""

    status = 404


class Conflict(ClassifiError):
    """The request contradicts the current state (e.g. reviewing a photo twice)."""

    status = 409


class StoreError(ClassifiError):
    """The object store failed or refused an operation."""


class StoreUnavailable(StoreError):
    """The object store cannot be reached."""

    status = 503


class InvalidKey(StoreError):
    """An object key that would escape the bucket or is malformed."""

    status = 400


class RegistryError(ClassifiError):
    """The registry database failed or refused an operation."""


class RegistryUnavailable(RegistryError):
    """The registry database cannot be reached."""

    status = 503


class ModelError(ClassifiError):
    """A model cannot be built, loaded, trained or used."""


class WeightsNotFound(ModelError):
    """Pretrained backbone weights are not available on this machine."""


class NoChampion(ModelError):
    """No model has been promoted yet, so nothing can classify."""

    status = 503


class ModelLoading(ModelError):
    """The champion is loading in the background; it answers in a few seconds."""

    status = 503


class TrainingRefused(ModelError):
    """The data does not allow a meaningful training run."""

    status = 422


class TaskFailed(ModelError):
    """A job the worker ran (a retrain, a re-embed) failed; its log has the details."""


class AuthError(ClassifiError):
    """Missing or wrong credentials."""

    status = 401


class SourceError(ClassifiError):
    """An ingest source (folder, CSV manifest) is missing, unreadable or malformed."""

    status = 400


class QuotaExceeded(ClassifiError):
    """A submitter has as many pending submissions as allowed: wait for the review."""

    status = 429


class RateLimited(ClassifiError):
    """Too many requests from one address or with one key: try again after Retry-After."""

    status = 429


class InsufficientStorage(ClassifiError):
    """The server keeps no more submissions: too many pending, or its disk is nearly full."""

    status = 507


class LockHeld(Conflict):
    """Another process holds the maintenance lock (a retrain, a repair)."""


class Cancelled(ClassifiError):
    """The user cancelled a long job (an import, a training); what it had begun is undone."""

    status = 409


class ServerError(ClassifiError):
    """The edge server failed to answer (its log has the error)."""

    code = "internal_error"


class ServerUnreachable(ServerError):
    """The edge server does not answer (down, wrong URL, no network)."""

    code = "server_unreachable"
    status = 502


def _all_errors() -> list[type[ClassifiError]]:
    found, todo = [], [ClassifiError]
    while todo:
        cls = todo.pop(0)
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def error_class(code: str, status: int) -> type[ClassifiError]:
    """The class that raised an error answer with ``code`` and HTTP ``status``.

    An unknown code (a newer server, or werkzeug's own HTTP errors) falls back to
    :class:`ServerError` for a 5xx, else to the most general class with that status, else
    to :class:`BadRequest`.
    """
    classes = _all_errors()
    for cls in classes:
        if code == cls.code or code in cls.codes:
            return cls
    if status >= 500:
        return ServerError
    # Breadth first: the most general class of a status comes first.
    return next((cls for cls in classes if cls.status == status), BadRequest)


def rebuild_error(code: str, status: int, message: str) -> ClassifiError:
    """The exception a client raises for a server's ``{"error": {code, message}}`` answer."""
    cls = error_class(code, status)
    known = code == cls.code or code in cls.codes
    return cls(message, code=code if known else None)
