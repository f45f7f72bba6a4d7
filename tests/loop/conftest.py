"""Fixtures for the learning-loop tests: the shared photos embedded once per session, and
installations (registry + store + MLflow on a home) with a trained champion to copy."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.imaging import check_photo
from core.ingest import ingest, read_source
from core.loop.review import approve
from core.loop.submissions import submit_photo
from core.model.backbones import EFFICIENTNET_LITE0, get_backbone
from core.model.embeddings import EmbeddingCache
from core.model.predictor import Predictor
from core.model.training import train_model
from core.wire import Submission
from tests.installation import System, offline_settings

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

BASE_PER_LABEL = 60  # photos per label in the copied installations (policy and crash tests)


@pytest.fixture(scope="session")
def dataset_vectors(dataset_photos: dict[str, list[Path]]) -> dict[str, np.ndarray]:
    """EfficientNet-Lite0 vectors of the 340 shared photos by sha256, computed once.

    Tests seed each registry's embedding cache with them, as the first training of a real
    installation would have: the same bytes and backbone give the same vector.
    """
    settings = offline_settings(Path("/nonexistent-home-unused"))
    checked = [
        check_photo(path.read_bytes(), settings)
        for paths in dataset_photos.values()
        for path in paths
    ]
    vectors = get_backbone(EFFICIENTNET_LITE0, settings).embed([photo.image for photo in checked])
    return {photo.sha256: vector for photo, vector in zip(checked, vectors, strict=True)}


def seed_cache(system: System, vectors: dict[str, np.ndarray]) -> None:
    cache = EmbeddingCache(
        system.registry,
        system.store,
        get_backbone(EFFICIENTNET_LITE0, system.settings),
        batch_size=32,
    )
    shas = sorted(vectors)
    cache.store_vectors(shas, np.stack([vectors[sha] for sha in shas]))


def link_folder(root: Path, photos: dict[str, list[Path]]) -> Path:
    """A folder source with one sub-folder per label, of symlinks to the shared photos."""
    for label, paths in photos.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for path in paths:
            (root / label / path.name).symlink_to(path)
    return root


def install(
    system: System,
    photos: dict[str, list[Path]],
    vectors: dict[str, np.ndarray],
    source: Path,
) -> None:
    """Ingest ``photos``, seed their cached vectors and train the first champion."""
    ingest(
        read_source(str(link_folder(source, photos)), system.settings),
        system.settings,
        system.registry,
        system.store,
    )
    settings = system.settings
    shas = {
        check_photo(p.read_bytes(), settings).sha256 for paths in photos.values() for p in paths
    }
    seed_cache(system, {sha: vectors[sha] for sha in shas})
    train_model(settings, system.registry, system.store, promote_if_first=True, actor="test")


def split(photos: dict[str, list[Path]], count: int) -> tuple[dict[str, list[Path]], list[Path]]:
    """The first ``count`` photos per label, and the rest (for submissions)."""
    base = {label: paths[:count] for label, paths in photos.items()}
    rest = [path for paths in photos.values() for path in paths[count:]]
    return base, rest


@pytest.fixture(scope="session")
def trained_home(
    tmp_path_factory: pytest.TempPathFactory,
    dataset_photos: dict[str, list[Path]],
    dataset_vectors: dict[str, np.ndarray],
) -> Path:
    """An embedded installation: 60 photos per label ingested, a champion trained on them."""
    root = tmp_path_factory.mktemp("trained")
    system = System.open(root / "home")
    install(system, split(dataset_photos, BASE_PER_LABEL)[0], dataset_vectors, root / "source")
    system.registry.dispose()  # SQLite checkpointed before copies are made
    return root / "home"


@pytest.fixture
def make_system(
    tmp_path: Path,
    trained_home: Path,
    dataset_photos: dict[str, list[Path]],
    dataset_vectors: dict[str, np.ndarray],
) -> Iterator[Callable[..., System]]:
    """Copies of the trained installation, each on its own home; with a PostgreSQL
    ``registry_url``, the same installation made anew on that database."""
    opened: list[System] = []

    def build(name: str = "home", **overrides: Any) -> System:
        if str(overrides.get("registry_url", "")).startswith("postgresql"):
            system = System.open(tmp_path / name, **overrides)
            base = split(dataset_photos, BASE_PER_LABEL)[0]
            install(system, base, dataset_vectors, tmp_path / f"{name}-source")
        else:
            shutil.copytree(trained_home, tmp_path / name)
            system = System.open(tmp_path / name, **overrides)
        seed_cache(system, dataset_vectors)  # submissions of shared photos embed nothing
        opened.append(system)
        return system

    yield build
    for system in opened:
        system.registry.dispose()


@pytest.fixture
def fresh_photos(dataset_photos: dict[str, list[Path]]) -> dict[str, list[Path]]:
    """Photos per label that the trained installation has never seen."""
    return {label: paths[BASE_PER_LABEL:] for label, paths in dataset_photos.items()}


def submit_and_approve(system: System, paths: list[Path]) -> list[Submission]:
    """Submit each photo with its folder's label, then approve them all."""
    predictor = Predictor(system.settings, system.registry, system.store)
    submissions = [
        submit_photo(
            system.settings,
            system.registry,
            system.store,
            path.read_bytes(),
            folder_label(path),
            submitted_by="tester",
            predictor=predictor,
        )
        for path in paths
    ]
    approve(
        system.settings,
        system.registry,
        system.store,
        [s.photo_id for s in submissions],
        actor="admin",
    )
    return submissions


def folder_label(path: Path) -> str:
    return path.parent.name
