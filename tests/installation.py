"""One installation of the product on a test home: its settings, registry and store, with the
offline pretrained backbone (EfficientNet-Lite0) so that accuracy means something."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import Settings, load_settings
from core.model.backbones import EFFICIENTNET_LITE0
from core.registry import Registry
from core.store import ObjectStore, open_store

REPO_ROOT = Path(__file__).resolve().parents[1]
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


def run_classifi(
    home: Path, *args: str, settings: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``classifi --home HOME ARGS`` in a subprocess, as a user types it: with none of this
    process's CLASSIFI_* variables, only ``settings`` (``{"BACKBONE": ...}``) as such."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CLASSIFI_")}
    env.update({f"CLASSIFI_{name}": value for name, value in (settings or {}).items()})
    return subprocess.run(
        [sys.executable, "-m", "classifi", "--home", str(home), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
