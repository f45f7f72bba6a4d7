"""The exact scan: every cached vector of the backbone read from the registry and ranked.

The reference the other indexes are tested against, and the fallback where neither pgvector
nor sqlite-vec can run. It reads every vector on every query, a chunk at a time: about 5 KB
per photo at 1280 dimensions, fine for thousands of photos and far too slow for a million.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import select

from core.registry import Embedding
from core.vectors.base import Neighbour, VectorIndex, scan_closest

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.orm import Session

    from core.registry import Registry


class ExactScan(VectorIndex):
    id = "exact"

    @classmethod
    def open(cls, registry: Registry) -> ExactScan:
        return cls(registry)

    def add(
        self,
        backbone_id: str,
        sha256s: Sequence[str],
        vectors: np.ndarray,
        *,
        session: Session,
    ) -> None:
        """Nothing to do: the scan reads the cache itself."""

    def close(self) -> None:
        """Nothing held open."""

    def nearest(self, backbone_id: str, vector: np.ndarray, k: int) -> list[Neighbour]:
        rows = select(Embedding.sha256, Embedding.vector).where(
            Embedding.backbone_id == backbone_id, Embedding.dim == len(vector)
        )
        with self.registry.session() as session:
            return scan_closest(session, rows, vector, k)
