"""One registry suite, run on the embedded SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select, text

from core.errors import Conflict, RegistryUnavailable
from core.registry import Photo, PhotoStatus, Registry
from core.registry import db as registry_db
from tests.services import free_port

EXPECTED_TABLES = {
    "plants_data",
    "embeddings",
    "model_versions",
    "champion_history",
    "audit_log",
    "alembic_version",
}


def make_photo(name: str, label: str = "grass") -> Photo:
    sha = hashlib.sha256(name.encode()).hexdigest()
    key = f"raw/{label}/{sha}.jpg"
    return Photo(
        url_source=f"/photos/{name}.jpg",
        label=label,
        url_s3=f"s3://image-dandelion-grass/{key}",
        object_key=key,
        sha256=sha,
        status=PhotoStatus.TRAINED,
        width=250,
        height=180,
        size_bytes=1234,
        image_format="JPEG",
    )


def count_photos(registry: Registry) -> int:
    with registry.session() as session:
        return session.scalar(select(func.count()).select_from(Photo)) or 0


@pytest.fixture
def registry(registry_url: str) -> Iterator[Registry]:
    registry = Registry(registry_url)
    yield registry
    registry.dispose()


class TestRegistry:
    def test_migrations_run_at_start(self, registry: Registry) -> None:
        tables = set(inspect(registry.engine).get_table_names())
        assert tables >= EXPECTED_TABLES
        with registry.engine.connect() as connection:
            head = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert head == newest_revision()

    def test_migrating_again_is_a_no_op(
        self, registry: Registry, registry_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        with registry.session() as session:
            session.add(make_photo("kept"))
        # A new process would migrate again: forget that this one already did.
        monkeypatch.setattr(registry_db, "_migrated", set())

        second = Registry(registry_url)
        try:
            assert count_photos(second) == 1
            with second.engine.connect() as connection:
                versions = connection.execute(text("SELECT version_num FROM alembic_version"))
                assert [row[0] for row in versions] == [newest_revision()]
        finally:
            second.dispose()

    def test_session_commits_on_success(self, registry: Registry) -> None:
        with registry.session() as session:
            session.add(make_photo("a"))

        with registry.session() as session:
            stored = session.scalars(select(Photo)).one()
        assert stored.label == "grass"
        assert stored.status is PhotoStatus.TRAINED
        assert stored.created_at is not None

    def test_session_rolls_back_on_error(self, registry: Registry) -> None:
        with pytest.raises(RuntimeError), registry.session() as session:
            session.add(make_photo("a"))
            session.flush()
            raise RuntimeError("the caller failed halfway")

        assert count_photos(registry) == 0

    def test_duplicate_sha256_is_a_conflict_and_rolls_back(self, registry: Registry) -> None:
        with registry.session() as session:
            session.add(make_photo("a"))

        duplicate = make_photo("a", label="dandelion")
        with pytest.raises(Conflict), registry.session() as session:
            session.add(make_photo("b"))
            session.add(duplicate)

        assert count_photos(registry) == 1  # "b" went with the failed transaction

    def test_ping_answers(self, registry: Registry) -> None:
        registry.ping()


def newest_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(registry_db.MIGRATIONS_DIR)).get_current_head()
    assert head is not None
    return head


@pytest.mark.timeout(60)
def test_unreachable_postgresql_is_unavailable_with_a_clear_message() -> None:
    url = f"postgresql+psycopg2://classifi:s3cret-pw@127.0.0.1:{free_port()}/classifi"

    with pytest.raises(RegistryUnavailable) as raised:
        Registry(url)

    message = str(raised.value)
    assert "cannot be reached" in message
    assert "CLASSIFI_REGISTRY_URL" in message
    assert "s3cret-pw" not in message


def test_sqlite_has_wal_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    try:
        with registry.engine.connect() as connection:

            def pragma(name: str) -> object:
                return connection.execute(text(f"PRAGMA {name}")).scalar()

            assert pragma("journal_mode") == "wal"
            assert pragma("foreign_keys") == 1
            assert pragma("busy_timeout") == registry_db.SQLITE_BUSY_TIMEOUT_MS
    finally:
        registry.dispose()
