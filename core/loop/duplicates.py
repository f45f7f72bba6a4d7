"""Duplicate detection for submissions.

An exact duplicate has the same sha256 as a stored photo. A near-duplicate is a photo whose
embedding lies within ``settings.near_duplicate_distance`` (cosine distance) of a stored
photo's cached embedding for the same backbone: the bucket is never re-embedded for this.
The threshold was calibrated with ``bench/near_duplicates.py`` (see the comment in
``core/config.py``).
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from core.loop.moves import UPLOADING
from core.registry import Embedding, Photo, Registry
from core.wire import Duplicate


def cosine_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``1 - cos`` between every row of ``a`` and every row of ``b``: shape ``(len(a), len(b))``."""
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return np.clip(1.0 - a @ b.T, 0.0, 2.0)


def exact_duplicate(registry: Registry, sha256: str) -> Duplicate | None:
    with registry.session() as session:
        row = session.execute(select(Photo.id, Photo.status).where(Photo.sha256 == sha256)).first()
    return (
        Duplicate(photo_id=row.id, status=row.status, kind="exact", distance=0.0) if row else None
    )


def nearest_stored(
    registry: Registry, backbone_id: str, vector: np.ndarray, *, exclude_sha256: str
) -> Duplicate | None:
    """The stored photo whose cached ``backbone_id`` embedding is closest to ``vector``.

    Only photos with a cached embedding for that backbone take part: the cache holds every
    photo trained on or submitted, so in practice that is all of them.
    """
    with registry.session() as session:
        rows = session.execute(
            select(Photo.id, Photo.status, Embedding.vector)
            .join(Embedding, Embedding.sha256 == Photo.sha256)
            .where(
                Embedding.backbone_id == backbone_id,
                Embedding.dim == len(vector),
                Photo.sha256 != exclude_sha256,
                Photo.moving_to.is_distinct_from(UPLOADING),  # not yet stored
            )
        ).all()
    if not rows:
        return None
    matrix = np.frombuffer(b"".join(row.vector for row in rows), dtype="<f4").reshape(
        len(rows), len(vector)
    )
    distances = cosine_distances(vector[np.newaxis, :].astype(np.float32), matrix)[0]
    best = int(np.argmin(distances))
    return Duplicate(
        photo_id=rows[best].id,
        status=rows[best].status,
        kind="near",
        distance=float(distances[best]),
    )
