"""The object store interface and the bucket's key layout.

Keys are POSIX-style relative paths inside the bucket (``raw/grass/<sha256>.jpg``). They are
checked before any adapter sees them, so no key can escape the bucket.
"""

from __future__ import annotations

import posixpath
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import date

from core.errors import InvalidKey

RAW_PREFIX = "raw/"
PENDING_PREFIX = "raw/new_data/pending_validation/"
CORRECTED_PREFIX = "raw/new_data/corrected_data/"
MODEL_PREFIX = "model/"

_KEY_PART = re.compile(r"^[A-Za-z0-9._\-]+$")


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key, else raise :class:`InvalidKey`."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise InvalidKey(f"Object key {key!r} must be a relative path inside the bucket.")
    parts = key.split("/")
    for part in parts:
        if part in ("", ".", "..") or not _KEY_PART.match(part):
            raise InvalidKey(
                f"Object key {key!r} has an invalid part {part!r}: use letters, digits, '.', '_', '-'."
            )
    if posixpath.normpath(key) != key:
        raise InvalidKey(f"Object key {key!r} is not in normal form.")
    return key


def check_prefix(prefix: str) -> str:
    """A listing prefix: empty, or a safe key optionally ending with '/'."""
    if prefix:
        check_key(prefix.rstrip("/"))
    return prefix


def photo_key(prefix: str, sha256: str, extension: str) -> str:
    """Content-derived key: the same bytes always land on the same name."""
    return check_key(f"{prefix.rstrip('/')}/{sha256}{extension}")


def label_prefix(label: str) -> str:
    """Where the training photos of ``label`` live."""
    return check_key(f"{RAW_PREFIX}{label}") + "/"


def model_day_prefix(day: date) -> str:
    return f"{MODEL_PREFIX}{day.isoformat()}/"


class ObjectStore(ABC):
    """A bucket of immutable-by-convention objects addressed by key."""

    @property
    @abstractmethod
    def url(self) -> str:
        """The URL this store was opened from, without credentials."""

    @abstractmethod
    def url_for(self, key: str) -> str:
        """A stable URL naming one object, as recorded in the registry's ``url_s3``."""

    @abstractmethod
    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Write ``data`` atomically: readers see the old object or the whole new one."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The object's bytes; :class:`core.errors.NotFound` if absent."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def size(self, key: str) -> int:
        """The object's size in bytes; :class:`core.errors.NotFound` if absent."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Every key under ``prefix``, recursively, in lexical order."""

    @abstractmethod
    def copy(self, source: str, destination: str) -> None: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; deleting an absent key is not an error."""

    def move(self, source: str, destination: str) -> None:
        """Copy then delete: safe to repeat if the process dies between the two steps."""
        if source == destination:
            return
        if self.exists(source):
            self.copy(source, destination)
            self.delete(source)
        elif not self.exists(destination):
            from core.errors import NotFound

            raise NotFound(f"Cannot move {source!r}: it does not exist in {self.url}.")

    def free_bytes(self) -> int | None:
        """Free space where the objects are written, or None where it is not ours to watch
        (an S3 service manages its own capacity)."""
        return None

    def ping(self) -> None:
        """Raise :class:`core.errors.StoreUnavailable` if the store does not answer."""
        next(iter(self.list(MODEL_PREFIX)), None)
