"""Shared fixtures: settings on a temp home, the shared photos, and real service backends."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.config import Settings, load_settings
from tests.installation import S3_TEST_CREDENTIALS

pytest_plugins = ["tests.services", "tests.homes", "tests.image"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO_ROOT = Path(__file__).resolve().parents[1]
DATASET_DIR = REPO_ROOT.parent / "shared" / "datasets" / "dandelion-grass"


@pytest.fixture(scope="session")
def dataset_dir() -> Path:
    """The 340 real photos (170 per label), read in place, never copied into the repo."""
    if not DATASET_DIR.is_dir():
        pytest.fail(f"The shared photos are missing at {DATASET_DIR}")
    return DATASET_DIR


@pytest.fixture(scope="session")
def dataset_photos(dataset_dir: Path) -> dict[str, list[Path]]:
    return {label: sorted((dataset_dir / label).glob("*.jpg")) for label in ("dandelion", "grass")}


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings on a fresh temp home; keyword arguments override any setting."""

    def build(**overrides: Any) -> Settings:
        overrides.setdefault("home", tmp_path / "home")
        if str(overrides.get("store_url", "")).startswith("s3://"):
            for key, value in S3_TEST_CREDENTIALS.items():
                overrides.setdefault(key, value)
        return load_settings({}, overrides=overrides)

    return build


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Embedded defaults (SQLite, local folder) on a temp home."""
    return make_settings()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same registry tests run on the embedded SQLite and a real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
    else:
        yield request.getfixturevalue("postgres_url")


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same store tests run on the local folder and a real S3 HTTP endpoint."""
    if request.param == "local":
        return (tmp_path / "bucket").as_uri()
    return str(request.getfixturevalue("s3_store_url"))
