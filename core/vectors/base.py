"""What every similarity index offers, and the exact cosine ranking they all end with."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from sqlalchemy import Select
    from sqlalchemy.orm import Session

    from core.registry import Registry


class Neighbour(NamedTuple):
    """A cached embedding close to a query: its photo content and cosine distance."""

    sha256: str
    distance: float


class IndexUnavailable(Exception):
    """This index cannot run here (a missing extension or library); the message says why
    and what to install."""


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """The rows scaled to length 1 (zero rows stay zero)."""
    return matrix / np.maximum(np.linalg.norm(matrix, axis=-1, keepdims=True), 1e-12)


def cosine_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``1 - cos`` between every row of ``a`` and every row of ``b``: shape ``(len(a), len(b))``."""
    return np.clip(1.0 - unit_rows(a) @ unit_rows(b).T, 0.0, 2.0)


def closest(
    sha256s: Sequence[str], matrix: np.ndarray, vector: np.ndarray, k: int
) -> list[Neighbour]:
    """The ``k`` rows of ``matrix`` nearest to ``vector`` by exact cosine distance, nearest
    first (ties broken by sha256, so every index orders equal distances alike)."""
    if not len(sha256s):
        return []
    query = np.asarray(vector, dtype=np.float32)[np.newaxis, :]
    distances = cosine_distances(query, np.asarray(matrix, dtype=np.float32))[0]
    if k < len(distances):
        # Keep every row tied with the k-th so the sha256 tie-break below sees them all.
        kth = np.partition(distances, k - 1)[k - 1]
        candidates = np.flatnonzero(distances <= kth)
    else:
        candidates = np.arange(len(distances))
    ranked = sorted((float(distances[row]), sha256s[row]) for row in candidates.tolist())
    return [Neighbour(sha256, distance) for distance, sha256 in ranked[:k]]


#: Vectors a scan ranks at a time: about 5 MB at 1280 dimensions, however many are cached.
SCAN_CHUNK = 1024


def scan_closest(
    session: Session, rows: Select[str, bytes], vector: np.ndarray, k: int
) -> list[Neighbour]:
    """:func:`closest` over every row (``sha256``, ``vector``) that ``rows`` selects, read
    from the database a chunk at a time: the nearest ``k`` of all rows are among the nearest
    ``k`` of each chunk, so a scan's memory does not grow with the number of photos."""
    best: list[Neighbour] = []
    for chunk in session.execute(rows.execution_options(yield_per=SCAN_CHUNK)).partitions():
        matrix = vectors_from_bytes([row.vector for row in chunk], len(vector))
        found = closest([row.sha256 for row in chunk], matrix, vector, k)
        best = sorted([*best, *found], key=lambda n: (n.distance, n.sha256))[:k]
    return best


def vectors_from_bytes(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    """Cached embeddings (float32, little-endian, as the registry keeps them) as a matrix."""
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), dim)


class VectorIndex(ABC):
    """Nearest cached embeddings of one backbone, over the registry's embedding cache.

    The registry's ``embeddings`` table stays the truth: an index holds a derived copy of its
    vectors, filled as they are stored (:meth:`add`, called in the same registry transaction)
    and brought up to date with the cache the first time a backbone is used in a process, so
    an index that missed vectors (a crash, an upgrade, a restore) catches up by itself.
    Answers are photo contents (sha256) with their exact cosine distance; which of them are
    photos a caller wants (stored, pending, not the query itself) is the caller's business.
    """

    #: The id in :data:`core.vectors.INDEXES` and in the setting ``vector_index``.
    id: ClassVar[str]

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        #: Why the index chosen was not available, when this one stands in for it.
        self.fallback: str | None = None

    @classmethod
    @abstractmethod
    def open(cls, registry: Registry) -> VectorIndex:
        """The index on ``registry``; :class:`IndexUnavailable` if it cannot run here."""

    @abstractmethod
    def add(
        self,
        backbone_id: str,
        sha256s: Sequence[str],
        vectors: np.ndarray,
        *,
        session: Session,
    ) -> None:
        """Index vectors just written to the cache in ``session`` (already indexed: kept)."""

    @abstractmethod
    def nearest(self, backbone_id: str, vector: np.ndarray, k: int) -> list[Neighbour]:
        """Up to ``k`` cached ``backbone_id`` embeddings nearest to ``vector``, nearest first."""

    def describe(self) -> dict[str, Any]:
        """What ``classifi status`` shows about this index."""
        return {"index": self.id, "fallback": self.fallback}

    @abstractmethod
    def close(self) -> None:
        """Release what the index holds open (the registry's engine is the registry's)."""


class OncePerBackbone:
    """Runs ``prepare(backbone_id, dim)`` the first time each backbone is used, under a lock:
    how an index creates its part for a backbone and catches up with the cache."""

    def __init__(self, prepare: Callable[[str, int], None]) -> None:
        self._prepare = prepare
        self._done: set[tuple[str, int]] = set()
        self.lock = threading.RLock()

    def __call__(self, backbone_id: str, dim: int) -> None:
        with self.lock:
            if (backbone_id, dim) not in self._done:
                self._prepare(backbone_id, dim)
                self._done.add((backbone_id, dim))
