"""Fill the embedding cache for a backbone, e.g. before switching to it.

Only photos without a cached vector for that backbone are embedded; running it again embeds
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from core.config import Settings
from core.model.backbones import get_backbone, resolve_backbone_id
from core.model.embeddings import EmbeddingCache
from core.registry import Photo, Registry
from core.store import ObjectStore


@dataclass(frozen=True)
class ReembedReport:
    backbone: str
    photos: int
    embedded: int  # photos that went through the backbone in this run

    def to_dict(self) -> dict[str, Any]:
        return {"backbone": self.backbone, "photos": self.photos, "embedded": self.embedded}


def reembed(
    settings: Settings,
    registry: Registry,
    store: ObjectStore,
    *,
    backbone_id: str | None = None,
) -> ReembedReport:
    """Embed every stored photo missing from the cache of ``backbone_id`` (default: configured)."""
    backbone = get_backbone(backbone_id or resolve_backbone_id(settings), settings)
    with registry.session() as session:
        photos = session.execute(
            select(Photo.sha256, Photo.object_key).where(Photo.moving_to.is_(None))
        ).all()
    cache = EmbeddingCache(registry, store, backbone, batch_size=settings.embed_batch_size)
    missing = len(photos) - len(cache.cached(sha256 for sha256, _ in photos))
    cache.vectors([(sha256, key) for sha256, key in photos])
    return ReembedReport(backbone.id, len(photos), missing)
