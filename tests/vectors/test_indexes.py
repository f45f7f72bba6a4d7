"""Every similarity index gives the exact scan's answers on the shared photos: the same
near-duplicates (and, but for sqlite-vec's approximate far neighbours, the same nearest
photo), the same similar photos; indexes catch up with vectors cached before them; and
where an index cannot run, the exact scan stands in and says why."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from core import vectors
from core.app import App
from core.errors import ConfigError
from core.loop.duplicates import nearest_stored, similar_photos
from core.loop.submissions import submit_photo
from core.model.backbones import EFFICIENTNET_LITE0
from core.registry import Photo, PhotoStatus, Registry
from core.vectors import ExactScan, cosine_distances
from tests.installation import System, offline_settings

THRESHOLD = offline_settings(Path("/unused")).near_duplicate_distance


def photo_ids(system: System) -> dict[str, int]:
    with system.registry.session() as session:
        return {
            sha256: photo_id for sha256, photo_id in session.execute(select(Photo.sha256, Photo.id))
        }


def reference(vectors_by_sha: dict[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
    """The shared photos' sha256s and their distance matrix, by plain numpy (the diagonal
    set out of reach: a photo is never its own neighbour)."""
    shas = sorted(vectors_by_sha)
    distances = cosine_distances(*(np.stack([vectors_by_sha[s] for s in shas]),) * 2)
    np.fill_diagonal(distances, np.inf)
    return shas, distances


def test_near_duplicates_are_those_of_the_exact_scan(
    make_indexed, index_id: str, dataset_vectors: dict[str, np.ndarray]
) -> None:
    system = make_indexed(index_id)
    ids = photo_ids(system)
    shas, distances = reference(dataset_vectors)
    same_nearest = 0
    near_pairs = 0
    for row, sha in enumerate(shas):
        found = nearest_stored(
            system.registry, EFFICIENTNET_LITE0, dataset_vectors[sha], exclude_sha256=sha
        )
        assert found is not None and found.kind == "near"
        best = int(np.argmin(distances[row]))
        expected_near = ids[shas[best]] if distances[row, best] <= THRESHOLD else None
        near = found.photo_id if found.distance <= THRESHOLD else None
        assert near == expected_near, sha
        if near is not None:
            near_pairs += 1
            assert found.distance == pytest.approx(distances[row, best], abs=1e-5)
        same_nearest += found.photo_id == ids[shas[best]]
    assert near_pairs >= 6  # the dataset's own near-duplicates (see core/config.py)
    # HNSW over 340 photos visits them all; sqlite-vec's binary codes rank far ones roughly.
    assert same_nearest >= (330 if index_id == "sqlite-vec" else len(shas))


def reencoded(path: Path) -> bytes:
    buffer = io.BytesIO()
    Image.open(path).convert("RGB").save(buffer, "JPEG", quality=70)
    return buffer.getvalue()


def test_a_resubmitted_photo_is_flagged_on_every_index(
    make_indexed, index_id: str, dataset_photos: dict[str, list[Path]]
) -> None:
    system = make_indexed(index_id)
    original = dataset_photos["grass"][7]
    args = (system.settings, system.registry, system.store)
    exact = submit_photo(*args, original.read_bytes(), "grass")
    assert not exact.stored and exact.duplicate and exact.duplicate.kind == "exact"
    near = submit_photo(*args, reencoded(original), "grass")
    assert near.stored and near.duplicate and near.duplicate.kind == "near"
    assert near.duplicate.photo_id == exact.photo_id  # the photo with the original's bytes
    assert near.duplicate.distance <= THRESHOLD


def test_similar_photos_are_the_nearest_and_can_be_only_pending(
    make_indexed, index_id: str, dataset_vectors: dict[str, np.ndarray]
) -> None:
    system = make_indexed(index_id)
    ids = photo_ids(system)
    shas, distances = reference(dataset_vectors)
    query = shas[0]
    with App(system.settings, actor="test") as app:
        similar = app.similar(ids[query], limit=5)
    expected = [ids[shas[row]] for row in np.argsort(distances[0], kind="stable")[:5]]
    if index_id == "sqlite-vec":  # approximate beyond near-duplicates: most of them
        assert len(set(expected) & {s.photo_id for s in similar}) >= 3
    else:
        assert [s.photo_id for s in similar] == expected
    assert [s.distance for s in similar] == sorted(s.distance for s in similar)

    # Mark a few photos pending: only they answer, ranked exactly among themselves.
    pending_rows = [5, 50, 120, 300]
    with system.registry.session() as session:
        for row in pending_rows:
            session.get(Photo, ids[shas[row]]).status = PhotoStatus.PENDING  # type: ignore[union-attr]
    found = similar_photos(
        system.registry,
        EFFICIENTNET_LITE0,
        dataset_vectors[query],
        3,
        exclude_sha256s={query},
        pending_only=True,
    )
    ranked = sorted(pending_rows, key=lambda row: distances[0, row])[:3]
    assert [s.photo_id for s in found] == [ids[shas[row]] for row in ranked]
    assert {s.status for s in found} == {PhotoStatus.PENDING}


@pytest.mark.parametrize(
    "index_id", ["sqlite-vec", pytest.param("pgvector", marks=pytest.mark.integration)]
)
def test_an_index_catches_up_with_vectors_cached_before_it(
    make_indexed, index_id: str, dataset_vectors: dict[str, np.ndarray]
) -> None:
    """An upgrade, a crash between the cache and the index, a restore without vectors.db:
    the first search of a process fills in what the index lacks."""
    system = make_indexed(index_id, vector_index="exact")  # cached, never indexed
    shas = sorted(dataset_vectors)

    def answers(registry: Registry) -> list[str]:
        index = vectors.index_of(registry)
        assert index.id == index_id
        return [
            index.nearest(EFFICIENTNET_LITE0, dataset_vectors[sha], 1)[0].sha256 for sha in shas
        ]

    reopened = Registry(system.settings.registry_url)  # another process, on the same registry
    try:
        assert answers(reopened) == shas  # each photo's nearest vector is its own
        if index_id == "sqlite-vec":
            vectors.close_index(reopened)
            path = Path(str(reopened.engine.url.database)).with_name("vectors.db")
            path.unlink()  # a derived copy: deleted, it is rebuilt
            assert answers(reopened) == shas
    finally:
        vectors.close_index(reopened)
        reopened.dispose()


def test_where_an_index_cannot_run_the_exact_scan_stands_in(
    make_settings, caplog: pytest.LogCaptureFixture
) -> None:
    memory = Registry("sqlite://")  # no folder to put vectors.db in
    try:
        with caplog.at_level(logging.WARNING, logger="core.vectors"):
            index = vectors.open_index(memory)
        assert isinstance(index, ExactScan)
        assert "sqlite-vec is unavailable: an in-memory registry" in str(index.fallback)
        with pytest.raises(ConfigError, match=r"vector_index = 'sqlite-vec'.*in-memory"):
            vectors.open_index(memory, "sqlite-vec")
    finally:
        memory.dispose()
    status = App(make_settings(), actor="test").status()["similarity_index"]
    assert status == {"index": "sqlite-vec", "fallback": None, "path": status["path"]}


@pytest.mark.integration
def test_postgresql_without_pgvector_falls_back_with_one_warning(
    postgres_url: str, make_settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Debian's PostgreSQL has no pgvector: the exact scan, said once, and in the status."""
    settings = make_settings(registry_url=postgres_url)
    with caplog.at_level(logging.WARNING, logger="core.vectors"):
        for _ in range(2):
            with App(settings, actor="test") as app:
                status = app.status()["similarity_index"]
    assert status["index"] == "exact"
    assert "pgvector is unavailable" in status["fallback"]
    assert "has no pgvector extension" in status["fallback"]
    warnings = [r for r in caplog.records if "falls back to the exact scan" in r.message]
    assert len(warnings) <= 1  # once per process (an earlier test may have said it already)
    with pytest.raises(ConfigError, match="pgvector"):
        vectors.open_index(Registry(postgres_url), "pgvector")
