"""The registry's tables (SQLAlchemy 2). Alembic migrations in ``migrations/`` create them."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from core.wire import ModelState, PhotoStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Stored as plain strings (no native enum type) so migrations stay simple on both backends.
    return Enum(
        cls, name=name, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e]
    )


class Photo(Base):
    """One photo, stored once, named by the sha256 of its bytes."""

    __tablename__ = "plants_data"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url_source: Mapped[str] = mapped_column(Text)  # where it came from: path, URL or "upload"
    label: Mapped[str | None] = mapped_column(String(64), index=True)  # the label used for training
    url_s3: Mapped[str] = mapped_column(Text)  # full URL of the object, as in the specification
    object_key: Mapped[str] = mapped_column(String(512), unique=True)  # key inside the bucket
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[PhotoStatus] = mapped_column(_enum(PhotoStatus, "photo_status"), index=True)

    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)
    image_format: Mapped[str] = mapped_column(String(16))

    # Submissions: what the user proposed and what the model said at the time.
    proposed_label: Mapped[str | None] = mapped_column(String(64))
    submitted_by: Mapped[str | None] = mapped_column(String(128))
    predicted_label: Mapped[str | None] = mapped_column(String(64))
    predicted_confidence: Mapped[float | None] = mapped_column(Float)
    predicted_by_version: Mapped[int | None] = mapped_column(Integer)
    near_duplicate_of: Mapped[int | None] = mapped_column(
        ForeignKey("plants_data.id", ondelete="SET NULL")
    )
    near_duplicate_distance: Mapped[float | None] = mapped_column(Float)

    # Review.
    validated_label: Mapped[str | None] = mapped_column(String(64))
    validated_by: Mapped[str | None] = mapped_column(String(128))
    validated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    # Crash safety: set before an object moves, cleared with the registry update after it.
    moving_to: Mapped[str | None] = mapped_column(String(512))

    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class Embedding(Base):
    """The frozen backbone's output for one photo content, computed once per backbone."""

    __tablename__ = "embeddings"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    backbone_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32, little-endian
    # How it was computed: only vectors of runtimes that keep parity here are used.
    runtime: Mapped[str] = mapped_column(String(32), default="torch")
    precision: Mapped[str] = mapped_column(String(8), default="fp32")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelVersion(Base):
    """A trained head: its artifact, backbone, labels, metrics and lifecycle state."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # the version number
    object_key: Mapped[str] = mapped_column(String(512), unique=True)
    backbone_id: Mapped[str] = mapped_column(String(64))
    labels: Mapped[list[str]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    dataset_fingerprint: Mapped[str] = mapped_column(String(64))
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    mlflow_version: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[ModelState] = mapped_column(_enum(ModelState, "model_state"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    promoted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ChampionHistory(Base):
    """Which version was champion when, and why it changed."""

    __tablename__ = "champion_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(128))


class AuditEntry(Base):
    """Every decision: reviews, promotions, rollbacks, retrain checks."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_action_at", "action", "at"),  # the worker's metrics count by action
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    photo_id: Mapped[int | None] = mapped_column(ForeignKey("plants_data.id", ondelete="SET NULL"))
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    old_label: Mapped[str | None] = mapped_column(String(64))
    new_label: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class RetrainRun(Base):
    """One retrain of the learning loop, from moving the validated photos to the gate's
    decision. A run not yet ``finished_at`` is resumed by the next retrain check."""

    __tablename__ = "retrain_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(128))
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    photos_moved: Mapped[int] = mapped_column(Integer, default=0)
    candidate_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    promoted: Mapped[bool | None] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(Text)


class Credential(Base):
    """A secret stored as a salted hash (the edge server's admin token, the desktop's admin
    password), or as a plain hash for device keys; the web page's session signing key, which
    must be read back, as it is."""

    __tablename__ = "credentials"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class UsageCounter(Base):
    """Usage counts kept in the registry when no Prometheus server scrapes them (local mode)."""

    __tablename__ = "usage_counters"

    client: Mapped[str] = mapped_column(String(32), primary_key=True)
    event: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
