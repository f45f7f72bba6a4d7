"""Installations holding the 340 shared photos and their cached vectors, on each index."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core import vectors
from core.ingest import ingest, read_source
from tests.installation import System
from tests.loop.conftest import dataset_vectors, link_folder, seed_cache

__all__ = ["dataset_vectors"]

#: Each index, with the settings that select it.
INDEXES = {
    "exact": {"vector_index": "exact"},
    "sqlite-vec": {},
    "pgvector": {},  # with registry_url on the pgvector server
}


@pytest.fixture
def make_indexed(
    tmp_path: Path,
    dataset_photos: dict[str, list[Path]],
    dataset_vectors: dict[str, np.ndarray],
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., System]]:
    """``build(index)``: an installation with every shared photo ingested and its vector
    cached (through the index, as a real installation caches them)."""
    opened: list[System] = []

    def build(index: str, **overrides: Any) -> System:
        overrides = {**INDEXES[index], **overrides}
        if index == "pgvector":
            overrides.setdefault("registry_url", request.getfixturevalue("pgvector_url"))
        home = tmp_path / f"home-{len(opened)}"
        system = System.open(home, **overrides)
        opened.append(system)
        vectors.choose_index(system.registry, system.settings.vector_index)
        source = link_folder(tmp_path / f"source-{len(opened)}", dataset_photos)
        ingest(
            read_source(str(source), system.settings),
            system.settings,
            system.registry,
            system.store,
        )
        seed_cache(system, dataset_vectors)
        chosen = system.settings.vector_index
        assert vectors.index_of(system.registry).id == (index if chosen == "auto" else chosen)
        return system

    yield build
    for system in opened:
        vectors.close_index(system.registry)
        system.registry.dispose()


@pytest.fixture(
    params=["exact", "sqlite-vec", pytest.param("pgvector", marks=pytest.mark.integration)]
)
def index_id(request: pytest.FixtureRequest) -> str:
    return str(request.param)
