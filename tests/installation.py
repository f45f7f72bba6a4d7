"""One installation of the product on a test home: its settings, registry and store, with the
offline pretrained backbone (EfficientNet-Lite0) so that accuracy means something."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import Settings, load_settings
from core.model.backbones import EFFICIENTNET_LITE0
from core.registry import Registry
from core.store import ObjectStore, open_store

S3_TEST_CREDENTIALS = {"s3_access_key": "classifi-test", "s3_secret_key": "classifi-test-secret"}


def offline_settings(home: Path, **overrides: Any) -> Settings:
    """Settings on ``home`` with the offline backbone (and the test S3 keys for an s3:// store)."""
    if str(overrides.get("store_url", "")).startswith("s3://"):
        overrides = {**S3_TEST_CREDENTIALS, **overrides}
    return load_settings({}, overrides={"home": home, "backbone": EFFICIENTNET_LITE0, **overrides})


@dataclass
class System:
    """One installation: settings, registry and store on its own home."""

    settings: Settings
    registry: Registry
    store: ObjectStore

    @classmethod
    def open(cls, home: Path, **overrides: Any) -> System:
        settings = offline_settings(home, **overrides)
        return cls(settings, Registry(settings.registry_url), open_store(settings))
