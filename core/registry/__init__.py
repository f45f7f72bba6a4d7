"""The registry: SQLAlchemy models over SQLite (embedded) or PostgreSQL."""

from core.registry.db import Registry
from core.registry.models import (
    AuditEntry,
    ChampionHistory,
    Embedding,
    ModelState,
    ModelVersion,
    Photo,
    PhotoStatus,
)

__all__ = [
    "AuditEntry",
    "ChampionHistory",
    "Embedding",
    "ModelState",
    "ModelVersion",
    "Photo",
    "PhotoStatus",
    "Registry",
]
