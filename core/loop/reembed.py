"""Fill the embedding cache for a backbone, e.g. before switching to it.

Only photos without a cached vector for that backbone are embedded; running it again embeds
nothing. The work can be done here in one go (:func:`reembed`) or split: :func:`plan_reembed`
lists what is missing and :func:`embed_photos` embeds any part of it, so that the worker
can spread the parts over every worker (``classifi reembed --queue``). A part done twice, or
by two workers at once, costs time and changes nothing: the cache keeps the first vector.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from core.config import Settings
from core.model.backbones import get_backbone, resolve_backbone_id
from core.model.embeddings import EmbeddingCache
from core.registry import Photo, Registry
from core.store import ObjectStore

#: A stored photo to embed: its sha256 and object key.
PhotoRef = tuple[str, str]


@dataclass(frozen=True)
class ReembedReport:
    backbone: str
    photos: int
    embedded: int  # photos that went through the backbone in this run

    def to_dict(self) -> dict[str, Any]:
        return {"backbone": self.backbone, "photos": self.photos, "embedded": self.embedded}


@dataclass(frozen=True)
class ReembedPlan:
    backbone: str  # resolved: every part embeds with this one, whatever a worker's settings
    photos: int  # stored photos
    missing: list[PhotoRef]  # those without a cached vector for the backbone


def plan_reembed(
    settings: Settings, registry: Registry, store: ObjectStore, *, backbone_id: str | None = None
) -> ReembedPlan:
    """The stored photos missing from the cache of ``backbone_id`` (default: configured)."""
    backbone = get_backbone(backbone_id or resolve_backbone_id(settings), settings)
    with registry.session() as session:
        photos = session.execute(
            select(Photo.sha256, Photo.object_key).where(Photo.moving_to.is_(None))
        ).all()
    cache = EmbeddingCache(registry, store, backbone, batch_size=settings.embed_batch_size)
    cached = cache.cached(sha256 for sha256, _ in photos)
    missing = [(sha256, key) for sha256, key in photos if sha256 not in cached]
    return ReembedPlan(backbone.id, len(photos), missing)


def embed_photos(
    settings: Settings,
    registry: Registry,
    store: ObjectStore,
    backbone_id: str,
    photos: Sequence[PhotoRef],
) -> int:
    """Embed those of ``photos`` still missing from the cache; how many that was."""
    backbone = get_backbone(backbone_id, settings)
    cache = EmbeddingCache(registry, store, backbone, batch_size=settings.embed_batch_size)
    missing = len(photos) - len(cache.cached(sha256 for sha256, _ in photos))
    cache.vectors(list(photos))
    return missing


def reembed(
    settings: Settings,
    registry: Registry,
    store: ObjectStore,
    *,
    backbone_id: str | None = None,
) -> ReembedReport:
    """Embed every stored photo missing from the cache of ``backbone_id`` (default: configured)."""
    plan = plan_reembed(settings, registry, store, backbone_id=backbone_id)
    embedded = embed_photos(settings, registry, store, plan.backbone, plan.missing)
    return ReembedReport(plan.backbone, plan.photos, embedded)
