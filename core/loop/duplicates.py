"""Duplicate detection for submissions, and the photos most like a given one.

An exact duplicate has the same sha256 as a stored photo. A near-duplicate is a photo whose
embedding lies within ``settings.near_duplicate_distance`` (cosine distance) of a stored
photo's cached embedding for the same backbone: the bucket is never re-embedded for this.
The threshold was calibrated with ``bench/near_duplicates.py`` (see the comment in
``core/config.py``).

Both searches go through the registry's similarity index (:mod:`core.vectors`), which knows
cached vectors only; which of them are photos worth answering (stored, not the query itself,
pending when asked) is decided here.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
from sqlalchemy import select

from core.config import Settings
from core.errors import BadRequest, NotFound
from core.loop.moves import UPLOADING
from core.model.backbones import get_backbone, resolve_backbone_id
from core.model.embeddings import EmbeddingCache
from core.model.versions import champion
from core.registry import Embedding, Photo, PhotoStatus, Registry
from core.store import ObjectStore
from core.vectors import Neighbour, index_of
from core.vectors.base import scan_closest
from core.wire import Duplicate, SimilarPhoto

#: Neighbours asked of the index beyond those wanted, for the few that are not photos to
#: answer (the query's own photo, uploads in flight, rejected photos deleted since).
_SLACK = 8


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
    found = similar_photos(registry, backbone_id, vector, 1, exclude_sha256s={exclude_sha256})
    if not found:
        return None
    return Duplicate(
        photo_id=found[0].photo_id, status=found[0].status, kind="near", distance=found[0].distance
    )


def similar_to_photo(
    settings: Settings,
    registry: Registry,
    store: ObjectStore,
    photo_id: int,
    k: int,
    *,
    pending_only: bool = False,
) -> list[SimilarPhoto]:
    """The ``k`` stored photos most like photo ``photo_id``, nearest first, by the embeddings
    of the champion's backbone (the configured one before the first model). The photo is
    embedded if its vector is not cached yet."""
    if k < 1:
        raise BadRequest(f"Ask for at least 1 similar photo, not {k}.", code="invalid_count")
    with registry.session() as session:
        photo = session.execute(
            select(Photo.sha256, Photo.object_key).where(Photo.id == photo_id)
        ).first()
    if photo is None:
        raise NotFound(f"Photo {photo_id} does not exist.")
    current = champion(registry)
    backbone = (
        get_backbone(
            current.backbone_id,
            settings,
            weights_sha256=current.params.get("backbone_weights_sha256"),
        )
        if current
        else get_backbone(resolve_backbone_id(settings), settings)
    )
    cache = EmbeddingCache(registry, store, backbone, batch_size=settings.embed_batch_size)
    vector = cache.vectors([(photo.sha256, photo.object_key)])[0]
    return similar_photos(
        registry, backbone.id, vector, k, exclude_sha256s={photo.sha256}, pending_only=pending_only
    )


def similar_photos(
    registry: Registry,
    backbone_id: str,
    vector: np.ndarray,
    k: int,
    *,
    exclude_sha256s: Collection[str] = (),
    pending_only: bool = False,
) -> list[SimilarPhoto]:
    """The ``k`` stored photos nearest to ``vector``, nearest first."""
    if pending_only:
        return _similar_pending(registry, backbone_id, vector, k, exclude_sha256s)
    index = index_of(registry)
    asked = k + len(exclude_sha256s) + _SLACK
    while True:
        neighbours = index.nearest(backbone_id, vector, asked)
        found = _stored_photos(registry, neighbours, exclude_sha256s)
        if len(found) >= k or len(neighbours) < asked:  # enough, or the index has no more
            return found[:k]
        asked *= 4


def _stored_photos(
    registry: Registry, neighbours: list[Neighbour], exclude_sha256s: Collection[str]
) -> list[SimilarPhoto]:
    """The neighbours that are stored photos other than those excluded, in the same order."""
    wanted = [n for n in neighbours if n.sha256 not in exclude_sha256s]
    with registry.session() as session:
        photos = {
            row.sha256: row
            for row in session.execute(
                select(Photo.sha256, Photo.id, Photo.status).where(
                    Photo.sha256.in_([n.sha256 for n in wanted]),
                    Photo.moving_to.is_distinct_from(UPLOADING),  # not yet stored
                )
            )
        }
    return [
        SimilarPhoto(
            photo_id=photos[n.sha256].id, status=photos[n.sha256].status, distance=n.distance
        )
        for n in wanted
        if n.sha256 in photos
    ]


def _similar_pending(
    registry: Registry,
    backbone_id: str,
    vector: np.ndarray,
    k: int,
    exclude_sha256s: Collection[str],
) -> list[SimilarPhoto]:
    """Among pending photos, by exact scan: the quota (``max_pending_submissions``, 5000 by
    default) keeps them few, and an index filtered down to a small share of its rows would
    have to walk most of them anyway."""
    rows = (
        select(Photo.sha256, Embedding.vector)
        .join(Embedding, Embedding.sha256 == Photo.sha256)
        .where(
            Photo.status == PhotoStatus.PENDING,
            Photo.moving_to.is_distinct_from(UPLOADING),
            Photo.sha256.not_in(exclude_sha256s),
            Embedding.backbone_id == backbone_id,
            Embedding.dim == len(vector),
        )
    )
    with registry.session() as session:
        neighbours = scan_closest(session, rows, vector, k)
    return _stored_photos(registry, neighbours, exclude_sha256s)
