"""The exact scan reads the cache a chunk at a time: the same answers as ranking every vector
at once, ties across chunks included, in memory that does not grow with the photos."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import insert

from core.registry import Embedding, Registry
from core.vectors import ExactScan, closest
from core.vectors.base import SCAN_CHUNK

BACKBONE = "test-backbone"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    opened = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    yield opened
    opened.dispose()


def cache(registry: Registry, sha256s: list[str], matrix: np.ndarray) -> None:
    rows = [
        {"sha256": sha, "backbone_id": BACKBONE, "dim": matrix.shape[1], "vector": row.tobytes()}
        for sha, row in zip(sha256s, matrix.astype("<f4"), strict=True)
    ]
    with registry.session() as session:
        session.execute(insert(Embedding), rows)


def test_a_scan_over_many_chunks_answers_as_one_ranking(registry: Registry) -> None:
    rng = np.random.default_rng(3)
    count, dim = 3 * SCAN_CHUNK + 17, 32
    matrix = rng.standard_normal((count, dim)).astype(np.float32)
    query = rng.standard_normal(dim).astype(np.float32)
    # Copies of the nearest vector, spread over the chunks: equal distances, which the
    # sha256 tie-break must order as a single ranking would.
    nearest = int(np.argmin(1 - matrix @ query / np.linalg.norm(matrix, axis=1)))
    matrix[[5, SCAN_CHUNK + 5, 2 * SCAN_CHUNK + 5, count - 1]] = matrix[nearest]
    sha256s = [f"{value:064x}" for value in rng.permutation(count)]  # rows not in sha order
    cache(registry, sha256s, matrix)

    index = ExactScan.open(registry)
    for k in (1, 5, 40, count + 1):
        found = index.nearest(BACKBONE, query, k)
        expected = closest(sha256s, matrix, query, k)
        assert [n.sha256 for n in found] == [n.sha256 for n in expected], k
        assert [n.distance for n in found] == pytest.approx([n.distance for n in expected])
    assert len({n.distance for n in index.nearest(BACKBONE, query, 5)}) == 1  # the tied copies


def test_a_scan_holds_a_chunk_not_the_cache(registry: Registry) -> None:
    rng = np.random.default_rng(4)
    count, dim = 8 * SCAN_CHUNK, 1280
    cache(registry, [f"{value:064x}" for value in range(count)], rng.standard_normal((count, dim)))
    index = ExactScan.open(registry)
    query = rng.standard_normal(dim).astype(np.float32)
    index.nearest(BACKBONE, query, 5)  # imports and the connection are not the scan's
    tracemalloc.start()
    try:
        index.nearest(BACKBONE, query, 5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    chunk = SCAN_CHUNK * dim * 4  # 5 MB of the 42 MB cached (read at once: a 126 MB peak)
    assert peak < 4 * chunk
