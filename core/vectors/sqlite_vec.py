"""sqlite-vec beside an embedded registry: ``vectors.db`` next to ``registry.db``.

sqlite-vec's ``vec0`` tables search by brute force, in C. Over float vectors that is about
150-300 ms for 100k photos of 1280 dimensions here, too slow, so each photo is kept as a
binary code (one bit per dimension: positive or not; sqlite-vec's documented binary
quantization) and searched by Hamming distance, 32 times less to read; the best
``max(RESCORED, 16 k)`` candidates are then re-ranked by exact cosine distance on their cached
float vectors, read from the registry. Near-duplicates, whose codes differ in few bits, are
always among those candidates; for distant neighbours the ranking is approximate.

The file is a derived copy: deleting it loses nothing (it is rebuilt from the registry's
cache on next use), and a backup leaves it out. It has its own lock, so it can be written
while the registry is, without a transaction spanning both: a vector indexed whose registry
row was rolled back is dropped at re-ranking, and a vector cached but not indexed is added
the next time a process prepares that backbone.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import make_url

from core.registry import Embedding
from core.vectors.base import (
    IndexUnavailable,
    Neighbour,
    OncePerBackbone,
    VectorIndex,
    closest,
    vectors_from_bytes,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from core.registry import Registry

log = logging.getLogger(__name__)

FILE_NAME = "vectors.db"
#: Candidates re-ranked exactly at least; enough that every near-duplicate of the shared
#: photos is among them (tests/vectors).
RESCORED = 128
#: sqlite-vec answers at most this many neighbours per query.
K_MAX = 4096
_CHUNK = 500
BUSY_TIMEOUT_S = 30.0


def _sqlite_module() -> ModuleType:
    """A DB-API sqlite3 that can load extensions: the standard one, or pysqlite3 where this
    Python was built without extension loading (pyenv's default, for one)."""
    import sqlite3

    if hasattr(sqlite3.Connection, "enable_load_extension"):
        return sqlite3
    try:
        return importlib.import_module("pysqlite3.dbapi2")
    except ImportError:
        raise IndexUnavailable(
            "this Python's sqlite3 cannot load extensions and pysqlite3 is not installed "
            "(pip install pysqlite3)"
        ) from None


def codes_of(vectors: np.ndarray) -> list[bytes]:
    """Each row's code: one bit per dimension, set where the value is positive (padded to
    whole bytes)."""
    return [row.tobytes() for row in np.packbits(np.atleast_2d(vectors) > 0, axis=-1)]


def _table(backbone_id: str, dim: int) -> str:
    return f"codes_{re.sub(r'[^A-Za-z0-9]', '_', backbone_id)}_{dim}"


class SqliteVecIndex(VectorIndex):
    id = "sqlite-vec"

    def __init__(self, registry: Registry, path: Path, connection: Any) -> None:
        super().__init__(registry)
        self.path = path
        self._db = connection
        self._prepared = OncePerBackbone(self._prepare)
        self._lock = self._prepared.lock  # one connection: one user at a time

    @classmethod
    def open(cls, registry: Registry) -> SqliteVecIndex:
        database = make_url(registry.url).database
        if not registry.is_sqlite:
            raise IndexUnavailable("sqlite-vec serves a SQLite registry only")
        if not database or database == ":memory:":
            raise IndexUnavailable("an in-memory registry has no folder for vectors.db")
        try:
            import sqlite_vec
        except ImportError:
            raise IndexUnavailable("sqlite-vec is not installed (pip install sqlite-vec)") from None
        sqlite = _sqlite_module()
        path = Path(database).expanduser().with_name(FILE_NAME)
        # Autocommit: each write below opens its own BEGIN IMMEDIATE transaction.
        connection = sqlite.connect(
            str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            connection.enable_load_extension(True)
            sqlite_vec.load(connection)
            connection.enable_load_extension(False)
        except Exception as exc:  # the extension's own error, whatever its class
            connection.close()
            raise IndexUnavailable(f"sqlite-vec does not load here: {exc}") from None
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        # Searches read every code: let them come from memory, not through read() calls.
        connection.execute("PRAGMA mmap_size=1073741824")
        connection.execute(
            "CREATE TABLE IF NOT EXISTS contents (id INTEGER PRIMARY KEY, backbone_id TEXT "
            "NOT NULL, dim INTEGER NOT NULL, sha256 TEXT NOT NULL, UNIQUE (backbone_id, dim, "
            "sha256))"
        )
        return cls(registry, path, connection)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "path": str(self.path)}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(
        self,
        backbone_id: str,
        sha256s: Sequence[str],
        vectors: np.ndarray,
        *,
        session: Session,
    ) -> None:
        dim = vectors.shape[1]
        self._prepared(backbone_id, dim)
        with self._lock:
            self._insert(backbone_id, dim, sha256s, codes_of(vectors))

    def nearest(self, backbone_id: str, vector: np.ndarray, k: int) -> list[Neighbour]:
        dim = len(vector)
        self._prepared(backbone_id, dim)
        wanted = min(max(RESCORED, 16 * k), K_MAX)
        with self._lock:
            candidates = [
                sha256
                for (sha256,) in self._db.execute(
                    f"SELECT contents.sha256 FROM (SELECT rowid, distance FROM "
                    f"{_table(backbone_id, dim)} WHERE code MATCH vec_bit(?) AND k = ?) AS knn "
                    "JOIN contents ON contents.id = knn.rowid ORDER BY knn.distance",
                    (codes_of(vector)[0], wanted),
                )
            ]
        found: dict[str, bytes] = {}
        with self.registry.session() as session:
            for start in range(0, len(candidates), _CHUNK):
                rows = session.execute(
                    select(Embedding.sha256, Embedding.vector).where(
                        Embedding.backbone_id == backbone_id,
                        Embedding.sha256.in_(candidates[start : start + _CHUNK]),
                    )
                )
                found.update((row.sha256, row.vector) for row in rows)
        shas = list(found)
        return closest(shas, vectors_from_bytes([found[sha] for sha in shas], dim), vector, k)

    def _prepare(self, backbone_id: str, dim: int) -> None:
        bits = -(-dim // 8) * 8
        with self._lock:
            self._db.execute(
                f"CREATE VIRTUAL TABLE IF NOT EXISTS {_table(backbone_id, dim)} "
                f"USING vec0(code bit[{bits}])"
            )
            indexed = {
                sha256
                for (sha256,) in self._db.execute(
                    "SELECT sha256 FROM contents WHERE backbone_id = ? AND dim = ?",
                    (backbone_id, dim),
                )
            }
        added = 0
        for sha256s, blobs in self._cached(backbone_id, dim, indexed):
            with self._lock:
                self._insert(backbone_id, dim, sha256s, codes_of(vectors_from_bytes(blobs, dim)))
            added += len(sha256s)
        if added:
            log.info(
                "vectors: %d %s vectors added to %s from the cache", added, backbone_id, self.path
            )

    def _cached(
        self, backbone_id: str, dim: int, indexed: set[str]
    ) -> Iterator[tuple[list[str], list[bytes]]]:
        """The cache's vectors of this backbone missing from ``indexed``, in chunks."""
        with self.registry.session() as session:
            missing = [
                sha256
                for sha256 in session.scalars(
                    select(Embedding.sha256).where(
                        Embedding.backbone_id == backbone_id, Embedding.dim == dim
                    )
                )
                if sha256 not in indexed
            ]
        for start in range(0, len(missing), _CHUNK):
            with self.registry.session() as session:
                rows = session.execute(
                    select(Embedding.sha256, Embedding.vector).where(
                        Embedding.backbone_id == backbone_id,
                        Embedding.sha256.in_(missing[start : start + _CHUNK]),
                    )
                ).all()
            yield [row.sha256 for row in rows], [row.vector for row in rows]

    def _insert(
        self, backbone_id: str, dim: int, sha256s: Sequence[str], codes: list[bytes]
    ) -> None:
        """Add the codes not there yet, in one write transaction (other processes may add the
        same photos at the same time: the transaction makes check-then-insert safe)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for start in range(0, len(sha256s), _CHUNK):
                chunk = list(sha256s[start : start + _CHUNK])
                marks = ",".join("?" * len(chunk))
                present = {
                    sha256
                    for (sha256,) in self._db.execute(
                        f"SELECT sha256 FROM contents WHERE backbone_id = ? AND dim = ? AND "
                        f"sha256 IN ({marks})",
                        (backbone_id, dim, *chunk),
                    )
                }
                for sha256, code in zip(chunk, codes[start : start + _CHUNK], strict=True):
                    if sha256 in present:
                        continue
                    present.add(sha256)
                    row = self._db.execute(
                        "INSERT INTO contents (backbone_id, dim, sha256) VALUES (?, ?, ?)",
                        (backbone_id, dim, sha256),
                    ).lastrowid
                    self._db.execute(
                        f"INSERT INTO {_table(backbone_id, dim)} (rowid, code) "
                        "VALUES (?, vec_bit(?))",
                        (row, code),
                    )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
