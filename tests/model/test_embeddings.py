"""The embedding cache: each photo runs through a backbone once, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from sqlalchemy import func, select

from core.config import Settings
from core.errors import ModelError
from core.imaging import decode_stored
from core.model.backbone import Backbone, TimmBackbone
from core.model.backbones import EFFICIENTNET_LITE0, get_backbone
from core.model.embeddings import EmbeddingCache
from core.registry import Embedding, Registry
from core.store import LocalStore


class MeanColour(Backbone):
    """A real, tiny backbone (the mean RGB of a 8x8 thumbnail): a second backbone id."""

    id = "mean_colour"
    dim = 3

    @property
    def preprocessing(self) -> dict[str, Any]:
        return {"size": 8}

    def preprocess(self, image: Image.Image) -> np.ndarray:
        pixels = np.asarray(image.resize((8, 8)), dtype=np.float32) / 255.0
        return np.ascontiguousarray(pixels.transpose(2, 0, 1))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.mean(dim=(2, 3))


@pytest.fixture
def registry(registry_url: str) -> Iterator[Registry]:
    registry = Registry(registry_url)
    yield registry
    registry.dispose()


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "bucket")


@pytest.fixture
def stored(store: LocalStore, dataset_photos: dict[str, list[Path]]) -> list[tuple[str, str]]:
    """Ten real photos (five per label) in the store, as (sha256, object_key)."""
    photos = []
    for path in dataset_photos["dandelion"][:5] + dataset_photos["grass"][:5]:
        data = path.read_bytes()
        sha256 = hashlib.sha256(data).hexdigest()
        key = f"raw/{path.parent.name}/{sha256}.jpg"
        store.put(key, data)
        photos.append((sha256, key))
    return photos


@pytest.fixture
def lite(settings: Settings) -> TimmBackbone:
    return get_backbone(EFFICIENTNET_LITE0, settings)


def rows(registry: Registry, backbone_id: str) -> int:
    with registry.session() as session:
        count = session.scalar(
            select(func.count()).select_from(Embedding).where(Embedding.backbone_id == backbone_id)
        )
    return int(count or 0)


def direct(backbone: Backbone, store: LocalStore, photos: Sequence[tuple[str, str]]) -> np.ndarray:
    return backbone.embed([decode_stored(store.get(key)) for _, key in photos])


def test_each_photo_runs_through_the_backbone_once(
    registry: Registry, store: LocalStore, stored: list[tuple[str, str]], lite: TimmBackbone
) -> None:
    cache = EmbeddingCache(registry, store, lite, batch_size=4)
    progress: list[tuple[int, int]] = []
    with_duplicates = [*stored, stored[0], stored[3]]
    before = lite.images_embedded

    first = cache.vectors(
        with_duplicates, progress=lambda done, total: progress.append((done, total))
    )
    assert lite.images_embedded - before == 10  # the duplicates were embedded once
    assert progress == [(4, 10), (8, 10), (10, 10)]
    assert first.shape == (12, 1280) and first.dtype == np.float32
    np.testing.assert_array_equal(first[10], first[0])
    np.testing.assert_array_equal(first[11], first[3])
    np.testing.assert_allclose(first[:10], direct(lite, store, stored), atol=1e-5)
    assert rows(registry, EFFICIENTNET_LITE0) == 10

    before = lite.images_embedded
    again = cache.vectors(list(reversed(stored)))
    assert lite.images_embedded == before  # zero backbone passes the second time
    np.testing.assert_array_equal(again, first[:10][::-1])


def test_only_the_missing_photos_are_embedded(
    registry: Registry, store: LocalStore, stored: list[tuple[str, str]], lite: TimmBackbone
) -> None:
    cache = EmbeddingCache(registry, store, lite, batch_size=8)
    cache.vectors(stored[:6])
    assert set(cache.cached(sha for sha, _ in stored)) == {sha for sha, _ in stored[:6]}

    before = lite.images_embedded
    vectors = cache.vectors(stored)
    assert lite.images_embedded - before == 4
    assert vectors.shape == (10, 1280)


def test_vectors_stored_at_submission_are_reused(
    registry: Registry, store: LocalStore, stored: list[tuple[str, str]], lite: TimmBackbone
) -> None:
    cache = EmbeddingCache(registry, store, lite, batch_size=8)
    submitted = direct(lite, store, stored[:2])
    shas = [sha for sha, _ in stored[:2]]
    cache.store_vectors(shas, submitted)
    cache.store_vectors(shas, submitted + 1.0)  # stored again (a race): the first row stays

    before = lite.images_embedded
    np.testing.assert_array_equal(cache.vectors(stored[:2]), submitted)
    assert lite.images_embedded == before
    with pytest.raises(ValueError, match="expected 2 vectors of 1280"):
        cache.store_vectors(shas, submitted[:, :10])


def test_each_backbone_has_its_own_vectors(
    registry: Registry, store: LocalStore, stored: list[tuple[str, str]], lite: TimmBackbone
) -> None:
    EmbeddingCache(registry, store, lite, batch_size=8).vectors(stored)
    colour = MeanColour()
    vectors = EmbeddingCache(registry, store, colour, batch_size=8).vectors(stored)
    assert colour.images_embedded == 10 and vectors.shape == (10, 3)
    assert (rows(registry, EFFICIENTNET_LITE0), rows(registry, MeanColour.id)) == (10, 10)


def test_a_failure_keeps_the_batches_already_done(
    registry: Registry, store: LocalStore, stored: list[tuple[str, str]]
) -> None:
    # The 6th photo's object no longer matches its sha256: batches 1 (photos 1-3) and 2 (4-6)
    # are reached; the first is committed, the second fails before anything is written.
    _, key = stored[5]
    store.put(key, b"not the same bytes")
    colour = MeanColour()
    cache = EmbeddingCache(registry, store, colour, batch_size=3)
    with pytest.raises(ModelError, match="does not match its sha256"):
        cache.vectors(stored)
    assert set(cache.cached(sha for sha, _ in stored)) == {sha for sha, _ in stored[:3]}
    assert colour.images_embedded == 3


def test_no_photos_give_an_empty_matrix(
    registry: Registry, store: LocalStore, lite: TimmBackbone
) -> None:
    vectors = EmbeddingCache(registry, store, lite, batch_size=8).vectors([])
    assert vectors.shape == (0, 1280)
    assert EmbeddingCache(registry, store, lite, batch_size=8).cached([]) == {}
