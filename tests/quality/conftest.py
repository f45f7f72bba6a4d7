"""A home with the 340 shared photos embedded by the default offline backbone and a model
trained on them, shared by the quality tests (each test that changes data copies it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.app import App
from tests.model.conftest import copy_home, embedded_home  # noqa: F401 (the fixture)

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(scope="session")
def trained_home(
    tmp_path_factory: pytest.TempPathFactory,
    embedded_home: Path,  # noqa: F811 (the imported fixture)
) -> Path:
    """A copy of the embedded home with its first model (the champion), calibrated."""
    system = copy_home(embedded_home, tmp_path_factory.mktemp("quality") / "home")
    with App(system.settings, actor="quality-tests") as app:
        app.train()
    system.registry.dispose()
    return system.settings.home


@pytest.fixture
def own_app(trained_home: Path, tmp_path: Path) -> Iterator[App]:
    """An app on a copy of the trained home, for a test that changes its data."""
    system = copy_home(trained_home, tmp_path / "home")
    system.registry.dispose()
    with App(system.settings, actor="quality-tests") as app:
        yield app
