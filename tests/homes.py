"""Homes trained once per session and shared by every suite that needs one (the edge server,
the web page, the contract suite): fixtures of a plugin, so each is built exactly once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.config import Settings, load_settings
from core.ingest import ingest, read_source
from core.model.backbones import EFFICIENTNET_LITE0
from core.model.predictor import load_model, predict_with
from core.model.training import train_model, training_set
from core.model.versions import get_version
from core.registry import Registry
from core.store import open_store


def edge_settings(home: Path, **overrides: Any) -> Settings:
    return load_settings({}, overrides={"home": home, "backbone": EFFICIENTNET_LITE0, **overrides})


@pytest.fixture(scope="session")
def edge_home(tmp_path_factory: pytest.TempPathFactory, dataset_dir: Path) -> Path:
    """Photos ingested, version 1 champion (all photos), version 2 candidate (300 photos)."""
    home = tmp_path_factory.mktemp("edge") / "home"
    settings = edge_settings(home)
    registry, store = Registry(settings.registry_url), open_store(settings)
    ingest(read_source(str(dataset_dir), settings), settings, registry, store)
    first = train_model(settings, registry, store)
    assert first.became_champion
    second = train_model(
        settings, registry, store, photos=training_set(registry)[:300], promote_if_first=False
    )
    assert (first.version_id, second.version_id) == (1, 2) and not second.became_champion
    registry.dispose()
    return home


@pytest.fixture(scope="session")
def expected_labels(
    edge_home: Path, dataset_photos: dict[str, list[Path]]
) -> dict[int, dict[str, str]]:
    """What each model version says offline for each shared photo (``label/file`` -> label)."""
    from core.imaging import check_photo

    settings = edge_settings(edge_home)
    registry, store = Registry(settings.registry_url), open_store(settings)
    paths = [path for paths in dataset_photos.values() for path in paths]
    images = [check_photo(path.read_bytes(), settings).image for path in paths]
    answers = {}
    for version in (1, 2):
        model = load_model(settings, store, get_version(registry, version))
        predictions = predict_with(model, images, 32, settings.unsure_below)
        answers[version] = {
            photo_name(path): p.label for path, p in zip(paths, predictions, strict=True)
        }
    registry.dispose()
    return answers


def photo_name(path: Path) -> str:
    """``dandelion/00000001.jpg``: file names repeat across the label folders."""
    return f"{path.parent.name}/{path.name}"
