"""Fixtures for the model tests: the shared photos ingested, embedded once, and trained on."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.ingest import ingest, read_source
from core.model.backbones import EFFICIENTNET_LITE0, get_backbone
from core.model.embeddings import EmbeddingCache
from core.model.training import TrainingResult, train_model, training_set
from tests.installation import System

# The tests import mlflow themselves: no usage telemetry from a test run (as core does).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@dataclass
class TrainedSystem(System):
    first: TrainingResult  # the first training of this system (it became champion)


@pytest.fixture(scope="session")
def embedded_home(tmp_path_factory: pytest.TempPathFactory, dataset_dir: Path) -> Path:
    """A home holding the 340 shared photos, ingested and embedded by EfficientNet-Lite0.

    Embedding 340 photos is the slow part of every model test, so it happens once per
    session; each test module trains on its own copy of this home.
    """
    home = tmp_path_factory.mktemp("embedded") / "home"
    system = System.open(home)
    ingest(
        read_source(str(dataset_dir), system.settings),
        system.settings,
        system.registry,
        system.store,
    )
    backbone = get_backbone(EFFICIENTNET_LITE0, system.settings)
    cache = EmbeddingCache(system.registry, system.store, backbone, batch_size=32)
    cache.vectors([(photo.sha256, photo.object_key) for photo in training_set(system.registry)])
    system.registry.dispose()  # closes SQLite cleanly (WAL checkpointed) before copies are made
    return home


def copy_home(embedded_home: Path, destination: Path) -> System:
    """A fresh installation with the embedded photos (no model, no MLflow runs yet)."""
    shutil.copytree(embedded_home, destination)
    return System.open(destination)


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, embedded_home: Path
) -> Iterator[TrainedSystem]:
    """A copy of the embedded home with a first model trained (it is the champion)."""
    system = copy_home(embedded_home, tmp_path_factory.mktemp("trained") / "home")
    first = train_model(system.settings, system.registry, system.store)
    yield TrainedSystem(system.settings, system.registry, system.store, first)
    system.registry.dispose()


@pytest.fixture
def own_trained(trained: TrainedSystem, tmp_path: Path) -> Iterator[TrainedSystem]:
    """A copy of the module's trained system for a test that changes it (adds versions,
    moves the champion), so that no test depends on which ran before it."""
    system = copy_home(trained.settings.home, tmp_path / "own-home")
    yield TrainedSystem(system.settings, system.registry, system.store, trained.first)
    system.registry.dispose()
