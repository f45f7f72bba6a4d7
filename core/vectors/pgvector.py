"""pgvector in a PostgreSQL registry: the cached vectors in a ``vector`` column of the
``embeddings`` table, searched through one HNSW index (cosine) per backbone.

Backbones have different dimensions and an HNSW index needs one, so the column has none and
each backbone gets a partial index on the column cast to its dimension (pgvector's documented
way to index vectors of several dimensions in one column). The column is filled in the same
transaction as the cache's own row, so the two never disagree; rows cached before pgvector
was there are filled the first time a process searches that backbone, before its index is
built.

The schema is created here, at first use, rather than in a migration: whether it can be made
depends on the server (pgvector installed? may this role create the extension?), which can
change after the registry was migrated, and the fallback must keep working meanwhile.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import exc, text

from core.vectors.base import (
    IndexUnavailable,
    Neighbour,
    OncePerBackbone,
    VectorIndex,
    vectors_from_bytes,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from core.registry import Registry

log = logging.getLogger(__name__)

COLUMN = "embedding"
INSUFFICIENT_PRIVILEGE = "42501"  # PostgreSQL's SQLSTATE
#: pg_advisory_xact_lock key of the index's schema changes ("classvec" in ASCII).
LOCK_KEY = 0x636C617373766563
#: pgvector's hnsw.ef_search bounds; a wider search finds the true neighbours more often.
EF_SEARCH_MIN, EF_SEARCH_MAX = 100, 1000
_BACKFILL_CHUNK = 1000
_BACKBONE_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def vector_literal(vector: np.ndarray) -> str:
    """pgvector's text form, ``[0.1,0.2,...]``. Each float32 is written as the double it
    widens to, exactly, so pgvector reads back the same float32 (and repr is faster than
    numpy's own float32 printing)."""
    return "[" + ",".join(map(repr, np.asarray(vector, dtype=np.float32).tolist())) + "]"


def _partial_predicate(backbone_id: str, dim: int) -> str:
    """The WHERE clause of a backbone's index, as literals: a query uses a partial index only
    when the planner can see that its own WHERE implies the index's."""
    if not _BACKBONE_ID.fullmatch(backbone_id):
        raise ValueError(f"backbone id {backbone_id!r} is not a plain name")
    return f"backbone_id = '{backbone_id}' AND dim = {int(dim)}"


def _index_name(backbone_id: str, dim: int) -> str:
    return f"ix_embeddings_hnsw_{re.sub(r'[^A-Za-z0-9]', '_', backbone_id)}_{dim}"


class PgvectorIndex(VectorIndex):
    id = "pgvector"

    def __init__(self, registry: Registry, version: str) -> None:
        super().__init__(registry)
        self.version = version
        self._prepared = OncePerBackbone(self._prepare)

    @classmethod
    def open(cls, registry: Registry) -> PgvectorIndex:
        if registry.is_sqlite:
            raise IndexUnavailable("pgvector serves a PostgreSQL registry only")
        with registry.session() as session:
            version, column = cls._schema(session)
            if version is None or not column:
                # Processes opening a new registry together take turns; the first makes it.
                session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
                version, column = cls._schema(session)
            if version is None:
                version = cls._create_extension(registry, session)
            if not column:
                session.execute(text(f"ALTER TABLE embeddings ADD COLUMN {COLUMN} vector"))
                # Finds the rows still to fill at once, whatever the size of the table.
                session.execute(
                    text(
                        "CREATE INDEX ix_embeddings_unindexed ON embeddings "
                        f"(backbone_id, dim) WHERE {COLUMN} IS NULL"
                    )
                )
                log.info("vectors: added the pgvector column to %s", registry.safe_url)
        return cls(registry, str(version))

    @staticmethod
    def _schema(session: Session) -> tuple[str | None, bool]:
        """pgvector's version in this database (None: not enabled), and whether the column is
        there. Looked up first: DDL would lock the table even when it changes nothing."""
        version = session.scalar(
            text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        )
        column = session.scalar(
            text(
                "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND table_name = 'embeddings' AND column_name = :column"
            ),
            {"column": COLUMN},
        )
        return version, bool(column)

    @staticmethod
    def _create_extension(registry: Registry, session: Session) -> str:
        available = session.scalar(
            text("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
        )
        if available is None:
            raise IndexUnavailable(
                f"the PostgreSQL server of {registry.safe_url} has no pgvector extension "
                "(install it on the server: the pgvector/pgvector image, or the "
                "postgresql-NN-pgvector package of PostgreSQL's own apt repository)"
            )
        try:
            with session.begin_nested():
                session.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        except exc.DBAPIError as error:
            if getattr(error.orig, "pgcode", None) != INSUFFICIENT_PRIVILEGE:
                raise
            raise IndexUnavailable(
                "pgvector is installed on the server but this role may not enable it: have a "
                "superuser run CREATE EXTENSION vector in this database once"
            ) from None
        log.info("vectors: enabled pgvector %s in %s", available, registry.safe_url)
        return str(available)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "pgvector": self.version}

    def add(
        self,
        backbone_id: str,
        sha256s: Sequence[str],
        vectors: np.ndarray,
        *,
        session: Session,
    ) -> None:
        # In the cache's transaction; the index itself is built by the first search, never
        # here, where this transaction's locks would make it wait for itself.
        session.execute(
            text(
                f"UPDATE embeddings SET {COLUMN} = CAST(new.vector AS vector) FROM "
                "unnest(CAST(:sha256s AS text[]), CAST(:vectors AS text[])) AS new(sha256, vector) "
                "WHERE embeddings.sha256 = new.sha256 AND embeddings.backbone_id = :backbone_id "
                f"AND embeddings.{COLUMN} IS NULL"
            ),
            {
                "sha256s": list(sha256s),
                "vectors": [vector_literal(row) for row in vectors],
                "backbone_id": backbone_id,
            },
        )

    def close(self) -> None:
        """Nothing held open: the registry's engine is the registry's."""

    def nearest(self, backbone_id: str, vector: np.ndarray, k: int) -> list[Neighbour]:
        dim = len(vector)
        self._prepared(backbone_id, dim)
        distance = f"{COLUMN}::vector({dim}) <=> CAST(:query AS vector({dim}))"
        with self.registry.session() as session:
            ef_search = min(max(2 * k, EF_SEARCH_MIN), EF_SEARCH_MAX)
            session.execute(text(f"SET LOCAL hnsw.ef_search = {ef_search}"))
            # Past ef_search, keep walking the graph rather than answer fewer than k rows.
            session.execute(text("SET LOCAL hnsw.iterative_scan = strict_order"))
            rows = session.execute(
                text(
                    f"SELECT sha256, {distance} AS distance FROM embeddings WHERE "
                    f"{_partial_predicate(backbone_id, dim)} AND {COLUMN} IS NOT NULL "
                    f"ORDER BY {distance} LIMIT :k"
                ),
                {"query": vector_literal(vector), "k": k},
            ).all()
        ranked = sorted((max(float(row.distance), 0.0), row.sha256) for row in rows)
        return [Neighbour(sha256, distance) for distance, sha256 in ranked]

    def _prepare(self, backbone_id: str, dim: int) -> None:
        name = _index_name(backbone_id, dim)
        with self.registry.session() as session:
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
            filled = self._backfill(session, backbone_id, dim)
            if not session.scalar(text("SELECT to_regclass(:name)"), {"name": name}):
                log.info("vectors: building the HNSW index %s", name)
                session.execute(
                    text(
                        f"CREATE INDEX IF NOT EXISTS {name} ON embeddings USING hnsw "
                        f"(({COLUMN}::vector({dim})) vector_cosine_ops) "
                        f"WHERE {_partial_predicate(backbone_id, dim)}"
                    )
                )
        if filled:
            log.info("vectors: %d %s vectors copied into the pgvector column", filled, backbone_id)

    def _backfill(self, session: Session, backbone_id: str, dim: int) -> int:
        """Fill the column of the rows cached without it; their number."""
        filled = 0
        while rows := session.execute(
            text(
                f"SELECT sha256, vector FROM embeddings WHERE backbone_id = :backbone_id AND "
                f"dim = :dim AND {COLUMN} IS NULL LIMIT {_BACKFILL_CHUNK}"
            ),
            {"backbone_id": backbone_id, "dim": dim},
        ).all():
            self.add(
                backbone_id,
                [row.sha256 for row in rows],
                vectors_from_bytes([bytes(row.vector) for row in rows], dim),
                session=session,
            )
            filled += len(rows)
        return filled
