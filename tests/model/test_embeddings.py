"""The embedding cache: each photo runs through a backbone once, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select, update

from core.config import Settings
from core.errors import ModelError
from core.imaging import decode_stored
from core.model.backbone import Backbone
from core.model.backbones import EFFICIENTNET_LITE0, get_backbone
from core.model.embeddings import EmbeddingCache
from core.model.preprocessing import Preprocessing
from core.registry import Embedding, Registry
from core.store import LocalStore

MEAN_COLOUR = "mean_colour"


class MeanEngine:
    """A real, tiny network: the mean of each channel."""

    def run(self, batch: np.ndarray) -> np.ndarray:
        return batch.mean(axis=(2, 3))


def mean_colour() -> Backbone:
    """A second backbone id: the mean RGB of an 8x8 thumbnail, on a runtime of its own."""
    return Backbone(
        MEAN_COLOUR,
        3,
        Preprocessing(size=8, mean=(0.0,) * 3, std=(1.0,) * 3),
        MeanEngine(),
        runtime="numpy",
        precision="fp32",
        weights="none",
        weights_sha256="none",
        accepted_kinds=frozenset({"numpy/fp32"}),
        reason="a test backbone",
    )


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
def lite(settings: Settings, embedded_home: Path) -> Backbone:
    """Its files copied from the session's embedded home, as a second home on one machine does:
    not exported and measured again for each test."""
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
    registry: Registry, store: LocalStore, stored: list[tuple[str, str]], lite: Backbone
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
    registry: Registry, store: LocalStore, stored: list[tuple[str, str]], lite: Backbone
) -> None:
    cache = EmbeddingCache(registry, store, lite, batch_size=8)
    cache.vectors(stored[:6])
    assert set(cache.cached(sha for sha, _ in stored)) == {sha for sha, _ in stored[:6]}

    before = lite.images_embedded
    vectors = cache.vectors(stored)
    assert lite.images_embedded - before == 4
    assert vectors.shape == (10, 1280)


def test_vectors_stored_at_submission_are_reused(
    registry: Registry, store: LocalStore, stored: list[tuple[str, str]], lite: Backbone
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
    registry: Registry, store: LocalStore, stored: list[tuple[str, str]], lite: Backbone
) -> None:
    EmbeddingCache(registry, store, lite, batch_size=8).vectors(stored)
    colour = mean_colour()
    vectors = EmbeddingCache(registry, store, colour, batch_size=8).vectors(stored)
    assert colour.images_embedded == 10 and vectors.shape == (10, 3)
    assert (rows(registry, EFFICIENTNET_LITE0), rows(registry, MEAN_COLOUR)) == (10, 10)


def test_a_failure_keeps_the_batches_already_done(
    registry: Registry, store: LocalStore, stored: list[tuple[str, str]]
) -> None:
    # The 6th photo's object no longer matches its sha256: batches 1 (photos 1-3) and 2 (4-6)
    # are reached; the first is committed, the second fails before anything is written.
    _, key = stored[5]
    store.put(key, b"not the same bytes")
    colour = mean_colour()
    cache = EmbeddingCache(registry, store, colour, batch_size=3)
    with pytest.raises(ModelError, match="does not match its sha256"):
        cache.vectors(stored)
    assert set(cache.cached(sha for sha, _ in stored)) == {sha for sha, _ in stored[:3]}
    assert colour.images_embedded == 3


def test_no_photos_give_an_empty_matrix(
    registry: Registry, store: LocalStore, lite: Backbone
) -> None:
    vectors = EmbeddingCache(registry, store, lite, batch_size=8).vectors([])
    assert vectors.shape == (0, 1280)
    assert EmbeddingCache(registry, store, lite, batch_size=8).cached([]) == {}


def kinds(registry: Registry, backbone_id: str) -> set[tuple[str, str]]:
    with registry.session() as session:
        rows = session.execute(
            select(Embedding.runtime, Embedding.precision).where(
                Embedding.backbone_id == backbone_id
            )
        )
        return {(runtime, precision) for runtime, precision in rows}


def test_vectors_beyond_the_parity_bound_are_computed_again_and_replaced(
    registry: Registry, store: LocalStore, stored: list[tuple[str, str]], lite: Backbone
) -> None:
    cache = EmbeddingCache(registry, store, lite, batch_size=8)
    first = cache.vectors(stored)
    assert kinds(registry, EFFICIENTNET_LITE0) == {(lite.runtime, lite.precision)}
    assert lite.kind in lite.accepted_kinds and "torch/fp32" in lite.accepted_kinds

    # Four rows claim a kind that failed parity here (e.g. made by another runtime change).
    changed = [sha for sha, _ in stored[:4]]
    with registry.session() as session:
        session.execute(
            update(Embedding)
            .where(Embedding.sha256.in_(changed))
            .values(runtime="onnxruntime", precision="int8", vector=np.zeros(1280, "<f4").tobytes())
        )
    assert "onnxruntime/int8" not in lite.accepted_kinds
    assert set(cache.cached(sha for sha, _ in stored)) == {sha for sha, _ in stored[4:]}

    before = lite.images_embedded
    again = cache.vectors(stored)
    assert lite.images_embedded - before == 4  # only the rejected ones
    np.testing.assert_allclose(again, first, atol=1e-5)
    assert kinds(registry, EFFICIENTNET_LITE0) == {(lite.runtime, lite.precision)}
