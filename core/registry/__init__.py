"""The registry: SQLAlchemy models over SQLite (embedded) or PostgreSQL."""

from core.registry.db import Registry
from core.registry.models import (
    AuditEntry,
    ChampionHistory,
    Credential,
    Embedding,
    ModelState,
    ModelVersion,
    Photo,
    PhotoStatus,
    RetrainRun,
    UsageCounter,
)

__all__ = [
    "AuditEntry",
    "ChampionHistory",
    "Credential",
    "Embedding",
    "ModelState",
    "ModelVersion",
    "Photo",
    "PhotoStatus",
    "Registry",
    "RetrainRun",
    "UsageCounter",
]
