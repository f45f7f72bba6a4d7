"""The embedding cache: one vector per (photo sha256, backbone id), kept in the registry.

The frozen backbone never runs twice on the same photo for the same backbone: training,
retraining and the duplicate check all read their vectors here, and only the missing ones
are computed, in batches, each batch committed as soon as it is done.

Each vector records the runtime and precision that computed it. Vectors of any kind that
keeps parity with torch fp32 on this machine (``Backbone.accepted_kinds``) are mixed
freely; a vector of another kind counts as missing: it is computed again and replaced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
from sqlalchemy import and_, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from core.errors import ModelError
from core.imaging import decode_stored, sha256_of
from core.model.backbone import Backbone
from core.model.runtimes import kind
from core.registry import Registry
from core.registry.models import Embedding
from core.store import ObjectStore
from core.vectors import index_of

# Keeps each IN (...) well below SQLite's bound-parameter limit.
_LOOKUP_CHUNK = 500


class EmbeddingCache:
    """Vectors of stored photos for one backbone, computed once and persisted."""

    def __init__(
        self, registry: Registry, store: ObjectStore, backbone: Backbone, *, batch_size: int
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.registry = registry
        self.store = store
        self.backbone = backbone
        self.batch_size = batch_size

    def cached(self, sha256s: Iterable[str]) -> dict[str, np.ndarray]:
        """The vectors already in the registry for these photos (missing ones are absent)."""
        wanted = list(dict.fromkeys(sha256s))
        found: dict[str, np.ndarray] = {}
        with self.registry.session() as session:
            for start in range(0, len(wanted), _LOOKUP_CHUNK):
                rows = session.execute(
                    select(
                        Embedding.sha256,
                        Embedding.dim,
                        Embedding.vector,
                        Embedding.runtime,
                        Embedding.precision,
                    ).where(
                        Embedding.backbone_id == self.backbone.id,
                        Embedding.sha256.in_(wanted[start : start + _LOOKUP_CHUNK]),
                    )
                )
                for sha256, dim, vector, runtime, precision in rows:
                    if kind(runtime, precision) not in self.backbone.accepted_kinds:
                        continue  # beyond the parity bound: computed again

                    if dim != self.backbone.dim or len(vector) != 4 * dim:
                        raise ModelError(
                            f"The cached {self.backbone.id} embedding of {sha256} has {dim} "
                            f"values, the backbone gives {self.backbone.dim}."
                        )
                    found[sha256] = np.frombuffer(vector, dtype="<f4").astype(np.float32)
        return found

    def store_vectors(self, sha256s: Sequence[str], vectors: np.ndarray) -> None:
        """Persist vectors of this backbone (e.g. computed at submission); an existing row is
        kept unless its kind is beyond the parity bound."""
        vectors = np.asarray(vectors, dtype="<f4")
        if vectors.shape != (len(sha256s), self.backbone.dim):
            raise ValueError(
                f"expected {len(sha256s)} vectors of {self.backbone.dim}, got {vectors.shape}"
            )
        if not len(sha256s):
            return
        rows = [
            {
                "sha256": sha256,
                "backbone_id": self.backbone.id,
                "dim": self.backbone.dim,
                "vector": vector.tobytes(),
                "runtime": self.backbone.runtime,
                "precision": self.backbone.precision,
            }
            for sha256, vector in zip(sha256s, vectors, strict=True)
        ]
        dialect = sqlite if self.registry.is_sqlite else postgresql
        insert = dialect.insert(Embedding)
        # Another process may have embedded the same photo meanwhile (its vector stands, as
        # it keeps parity); a row of a kind beyond the bound is replaced.
        accepted = or_(
            *(
                and_(Embedding.runtime == runtime, Embedding.precision == precision)
                for runtime, precision in (
                    k.split("/", 1) for k in sorted(self.backbone.accepted_kinds)
                )
            )
        )
        statement = insert.on_conflict_do_update(
            index_elements=[Embedding.sha256, Embedding.backbone_id],
            set_={
                name: insert.excluded[name]
                for name in ("dim", "vector", "runtime", "precision", "created_at")
            },
            where=~accepted,
        )
        # The similarity index (core.vectors) takes the same vectors in the same transaction;
        # opened first, as opening may change the schema, which would wait for this transaction.
        index = index_of(self.registry)
        with self.registry.session() as session:
            session.execute(statement, rows)
            index.add(self.backbone.id, sha256s, vectors, session=session)

    def vectors(
        self,
        photos: Sequence[tuple[str, str]],
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """float32 ``(len(photos), dim)`` for ``(sha256, object_key)`` pairs, in their order.

        ``progress(done, total)`` is called after each computed batch, counting missing photos.
        """
        keys: dict[str, str] = {}  # one object key per sha256: duplicates are embedded once
        for sha256, key in photos:
            keys.setdefault(sha256, key)
        found = self.cached(keys)
        missing = [(sha256, key) for sha256, key in keys.items() if sha256 not in found]
        batches = self.backbone.embed_batches(
            missing, self.batch_size, load=lambda photo: decode_stored(self._fetch(*photo))
        )
        for start, computed in zip(range(0, len(missing), self.batch_size), batches, strict=True):
            batch = missing[start : start + self.batch_size]
            self.store_vectors([sha256 for sha256, _ in batch], computed)
            found.update(zip((sha256 for sha256, _ in batch), computed, strict=True))
            if progress is not None:
                progress(start + len(batch), len(missing))
        out = np.empty((len(photos), self.backbone.dim), dtype=np.float32)
        for row, (sha256, _) in enumerate(photos):
            out[row] = found[sha256]
        return out

    def _fetch(self, sha256: str, key: str) -> bytes:
        data = self.store.get(key)
        if sha256_of(data) != sha256:
            raise ModelError(
                f"The stored object {key} does not match its sha256 {sha256}: the store and the "
                "registry disagree; re-ingest the photo."
            )
        return data
