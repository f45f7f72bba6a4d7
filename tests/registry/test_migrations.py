"""A registry made at the oldest schema revision, holding data, migrates to the newest with
nothing lost, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from core.registry import ModelState, ModelVersion, Photo, PhotoStatus, Registry
from core.registry.db import MIGRATIONS_DIR

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
OLD_ROWS = {
    "plants_data": {
        "id": 1,
        "url_source": "/photos/grass/a.jpg",
        "label": "grass",
        "url_s3": "file:///b/raw/grass/aa.jpg",
        "object_key": "raw/grass/aa.jpg",
        "sha256": "a" * 64,
        "status": "trained",
        "width": 300,
        "height": 200,
        "size_bytes": 1234,
        "image_format": "JPEG",
        "created_at": NOW,
        "updated_at": NOW,
    },
    "model_versions": {
        "id": 1,
        "object_key": "model/2026-11-27/efficientnet_lite0_classifier_1.pth",
        "backbone_id": "efficientnet_lite0",
        "labels": ["dandelion", "grass"],
        "metrics": {"accuracy": 0.959},
        "params": {"epochs": 10},
        "dataset_fingerprint": "f" * 64,
        "artifact_sha256": "b" * 64,
        "state": "champion",
        "created_at": NOW,
        "promoted_at": NOW,
    },
    "embeddings": {
        "sha256": "a" * 64,
        "backbone_id": "efficientnet_lite0",
        "dim": 2,
        "vector": b"\x00\x00\x80?\x00\x00\x00@",
        "created_at": NOW,
    },
    "credentials": {
        "name": "edge_admin_token",
        "secret_hash": "scrypt$1$2$3$00$00",
        "created_at": NOW,
    },
    "audit_log": {"id": 1, "at": NOW, "actor": "alice", "action": "promote", "model_version_id": 1},
    "champion_history": {
        "id": 1,
        "model_version_id": 1,
        "started_at": NOW,
        "reason": "first model",
        "actor": "cli",
    },
    "usage_counters": {"client": "desktop", "event": "session", "count": 3, "updated_at": NOW},
}


def oldest_revision(url: str) -> sa.Engine:
    engine = sa.create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    return engine


def test_data_at_the_oldest_revision_survives_every_migration(registry_url: str) -> None:
    engine = oldest_revision(registry_url)
    tables = sa.MetaData()
    tables.reflect(engine)
    assert set(tables.tables) - {"alembic_version"} == set(OLD_ROWS)  # every table holds data
    with engine.begin() as connection:
        for name, row in OLD_ROWS.items():
            connection.execute(tables.tables[name].insert().values(**row))
    engine.dispose()

    registry = Registry(registry_url)  # migrates to the newest revision on open
    with registry.session() as session:
        photo = session.get(Photo, 1)
        version = session.get(ModelVersion, 1)
        assert photo is not None and photo.status == PhotoStatus.TRAINED
        assert photo.label == "grass" and photo.sha256 == "a" * 64
        assert version is not None and version.state == ModelState.CHAMPION
        assert version.metrics == {"accuracy": 0.959} and version.labels == ["dandelion", "grass"]
    newest = sa.MetaData()
    newest.reflect(registry.engine)
    with registry.engine.connect() as connection:
        for name, row in OLD_ROWS.items():
            stored = connection.execute(sa.select(newest.tables[name])).mappings().one()
            for column, value in row.items():
                if isinstance(value, datetime):
                    assert stored[column].replace(tzinfo=UTC) == value, (name, column)
                else:
                    assert stored[column] == value, (name, column)
    assert "retrain_runs" in newest.tables
    registry.dispose()
