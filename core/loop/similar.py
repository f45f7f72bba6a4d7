"""Select similar: the pending photos nearest to one of them, by the cosine distance of their
cached embeddings (the champion's backbone), for one decision on them all.

A plain scan of the pending photos' vectors: the review queue is small (at most
``max_pending_submissions``). Vectors missing from the cache are computed once and kept.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from core.config import Settings
from core.errors import Conflict, NoChampion, NotFound
from core.model.backbones import get_backbone
from core.model.calibration import normalised
from core.model.embeddings import EmbeddingCache
from core.model.versions import champion
from core.registry import Photo, PhotoStatus, Registry
from core.store import ObjectStore
from core.wire import SimilarPhoto


def similar_pending(
    settings: Settings, registry: Registry, store: ObjectStore, photo_id: int, *, limit: int
) -> list[SimilarPhoto]:
    """Up to ``limit`` other pending photos, nearest to ``photo_id`` first."""
    with registry.session() as session:
        anchor = session.get(Photo, photo_id)
        if anchor is None:
            raise NotFound(f"No photo with id {photo_id}.")
        if anchor.status != PhotoStatus.PENDING:
            raise Conflict(f"Photo {photo_id} is {anchor.status}: similar photos are pending ones.")
        others = session.execute(
            select(Photo.id, Photo.sha256, Photo.object_key)
            .where(
                Photo.status == PhotoStatus.PENDING,
                Photo.moving_to.is_(None),
                Photo.id != photo_id,
            )
            .order_by(Photo.id)
        ).all()
        anchor_item = (anchor.sha256, anchor.object_key)
    if not others:
        return []
    current = champion(registry)
    if current is None:
        raise NoChampion("Similar photos are found with the model's backbone: train one first.")
    backbone = get_backbone(
        current.backbone_id, settings, weights_sha256=current.params.get("backbone_weights_sha256")
    )
    cache = EmbeddingCache(registry, store, backbone, batch_size=settings.embed_batch_size)
    vectors = normalised(
        cache.vectors([anchor_item, *((row.sha256, row.object_key) for row in others)])
    )
    distances = 1.0 - vectors[1:] @ vectors[0]
    order = np.argsort(distances, kind="stable")[:limit]
    return [
        SimilarPhoto(photo_id=others[index].id, distance=round(float(distances[index]), 6))
        for index in order
    ]
