"""Similarity search over the embedding cache: one interface, adapters chosen by id.

- ``pgvector``: an HNSW index in a PostgreSQL registry (:mod:`core.vectors.pgvector`);
- ``sqlite-vec``: binary codes in ``vectors.db`` beside a SQLite registry, re-ranked exactly
  (:mod:`core.vectors.sqlite_vec`);
- ``exact``: every cached vector read and ranked, the reference and the fallback
  (:mod:`core.vectors.exact`).

The setting ``vector_index`` picks one; ``auto`` (the default) takes the one made for the
registry's database and falls back to the exact scan, with one warning, where it cannot run.
Each :class:`~core.registry.Registry` object has one index, opened on first use: the
embedding cache adds to it (:func:`index_of`) and the duplicate search queries it.
"""

from __future__ import annotations

import logging
import threading
from weakref import WeakKeyDictionary

from core.errors import ConfigError
from core.registry import Registry
from core.vectors.base import IndexUnavailable, Neighbour, VectorIndex, closest, cosine_distances
from core.vectors.exact import ExactScan
from core.vectors.pgvector import PgvectorIndex
from core.vectors.sqlite_vec import SqliteVecIndex

__all__ = [
    "AUTO",
    "INDEXES",
    "Neighbour",
    "VectorIndex",
    "choose_index",
    "close_index",
    "closest",
    "cosine_distances",
    "index_of",
    "open_index",
]

log = logging.getLogger(__name__)

AUTO = "auto"
INDEXES: dict[str, type[VectorIndex]] = {
    index.id: index for index in (PgvectorIndex, SqliteVecIndex, ExactScan)
}

_lock = threading.Lock()
_choices: WeakKeyDictionary[Registry, str] = WeakKeyDictionary()
_opened: WeakKeyDictionary[Registry, VectorIndex] = WeakKeyDictionary()
_warned: set[str] = set()


def open_index(registry: Registry, choice: str = AUTO) -> VectorIndex:
    """A new index of kind ``choice`` on ``registry`` (see the module's docstring).

    An index named explicitly that cannot run is a :class:`ConfigError`; under ``auto`` the
    exact scan stands in, and says why in :meth:`VectorIndex.describe`.
    """
    wanted = choice
    if choice == AUTO:
        wanted = SqliteVecIndex.id if registry.is_sqlite else PgvectorIndex.id
    elif choice not in INDEXES:
        raise ConfigError(
            f"Unknown vector_index {choice!r}: use {AUTO!r} or one of {', '.join(INDEXES)}."
        )
    try:
        return INDEXES[wanted].open(registry)
    except IndexUnavailable as why:
        if choice != AUTO:
            raise ConfigError(
                f"Setting vector_index = {choice!r} cannot be used: {why}. Install what it "
                f"needs, or set vector_index = {AUTO!r}."
            ) from None
        index = ExactScan.open(registry)
        index.fallback = f"{wanted} is unavailable: {why}"
        message = (
            f"Similarity search falls back to the exact scan, which reads every cached vector "
            f"on each search (slow past some 100k photos): {index.fallback}."
        )
        if message not in _warned:  # once per process, not once per app
            _warned.add(message)
            log.warning(message)
        return index


def choose_index(registry: Registry, choice: str) -> None:
    """Make ``choice`` the kind of index :func:`index_of` opens for ``registry``."""
    with _lock:
        _choices[registry] = choice


def index_of(registry: Registry) -> VectorIndex:
    """The index of ``registry``, opened on first use (the choice given to
    :func:`choose_index`, else ``auto``)."""
    with _lock:
        index = _opened.get(registry)
        if index is None:
            index = _opened[registry] = open_index(registry, _choices.get(registry, AUTO))
        return index


def close_index(registry: Registry) -> None:
    """Close the index of ``registry`` if one is open (a later use opens it again)."""
    with _lock:
        index = _opened.pop(registry, None)
    if index is not None:
        index.close()
