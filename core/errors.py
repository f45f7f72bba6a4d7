"""The project's exceptions.

Every error a user can meet is one of these. Each message names the problem and, where there
is one, the fix. Front ends map them to exit codes, HTTP statuses or dialogs by class.
"""


class ClassifiError(Exception):
    """Base class of every error the application raises on purpose."""


class ConfigError(ClassifiError):
    """A setting is unknown, malformed or inconsistent."""


class InvalidImage(ClassifiError):
    """The bytes are not a usable photo (corrupt, not an image, too large, too small)."""

    def __init__(self, message: str, *, reason: str = "invalid_image") -> None:
        super().__init__(message)
        self.reason = reason


class UnsupportedMediaType(InvalidImage):
    """The content is not an image format we decode (judged by content, not by name)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="unsupported_type")


class ImageTooLarge(InvalidImage):
    """The file or its pixel count is above the configured limit."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="too_large")


class UnknownLabel(ClassifiError):
    """A label that is not in the configured label set."""


class NotFound(ClassifiError):
    """A photo, object or model version that does not exist."""


class Conflict(ClassifiError):
    """The request contradicts the current state (e.g. reviewing a photo twice)."""


class StoreError(ClassifiError):
    """The object store failed or refused an operation."""


class StoreUnavailable(StoreError):
    """The object store cannot be reached."""


class InvalidKey(StoreError):
    """An object key that would escape the bucket or is malformed."""


class RegistryError(ClassifiError):
    """The registry database failed or refused an operation."""


class RegistryUnavailable(RegistryError):
    """The registry database cannot be reached."""


class ModelError(ClassifiError):
    """A model cannot be built, loaded, trained or used."""


class WeightsNotFound(ModelError):
    """Pretrained backbone weights are not available on this machine."""


class NoChampion(ModelError):
    """No model has been promoted yet, so nothing can classify."""


class TrainingRefused(ModelError):
    """The data does not allow a meaningful training run."""


class AuthError(ClassifiError):
    """Missing or wrong credentials."""


class SourceError(ClassifiError):
    """An ingest source (folder, CSV manifest) is missing, unreadable or malformed."""
