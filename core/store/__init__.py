"""Object store: one interface, a local-folder default and an S3/MinIO adapter."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from core.config import Settings
from core.errors import ConfigError
from core.store.base import (
    CORRECTED_PREFIX,
    MODEL_PREFIX,
    PENDING_PREFIX,
    RAW_PREFIX,
    ObjectStore,
    check_key,
    label_prefix,
    model_day_prefix,
    photo_key,
)
from core.store.local import LocalStore

__all__ = [
    "CORRECTED_PREFIX",
    "MODEL_PREFIX",
    "PENDING_PREFIX",
    "RAW_PREFIX",
    "LocalStore",
    "ObjectStore",
    "check_key",
    "label_prefix",
    "model_day_prefix",
    "open_store",
    "photo_key",
]


def open_store(settings: Settings) -> ObjectStore:
    """The store named by ``settings.store_url``: ``file:///path`` or ``s3://bucket?endpoint=…``."""
    url = settings.store_url
    parts = urlsplit(url)
    if parts.scheme == "file":
        return LocalStore(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        from core.store.minio import MinioStore

        return MinioStore.from_url(url, settings)
    raise ConfigError(
        f"Unsupported store URL {url!r}: use file:///path/to/bucket or "
        "s3://bucket?endpoint=http://host:9000"
    )
