"""Model versions in the registry: which one is champion, and changing it.

The registry is the source of truth for the champion. MLflow's ``champion`` alias mirrors it
for people browsing MLflow; when MLflow cannot be updated the registry still decides.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.config import Settings
from core.errors import ClassifiError, NotFound
from core.model import tracking
from core.registry import AuditEntry, ChampionHistory, ModelState, ModelVersion, Registry
from core.registry.models import utcnow
from core.wire import ModelSummary

if TYPE_CHECKING:
    from core.model.artifacts import ModelArtifact

log = logging.getLogger(__name__)


def summary_of(row: ModelVersion) -> ModelSummary:
    """A registry row as the front ends show it."""
    return ModelSummary(
        version=row.id,
        state=row.state,
        backbone=row.backbone_id,
        labels=list(row.labels),
        metrics=dict(row.metrics),
        object_key=row.object_key,
        created_at=row.created_at,
        promoted_at=row.promoted_at,
    )


def add_candidate(
    session: Session,
    artifact: ModelArtifact,
    key: str,
    data: bytes,
    *,
    actor: str,
    action: str,
    detail: dict[str, Any],
    **tracking: str | None,
) -> int:
    """Add the candidate version of the artifact stored at ``key`` (its bytes ``data``) and
    its audit entry, in the caller's transaction; its id. ``tracking``: the MLflow run id and
    version, for a trained model."""
    row = ModelVersion(
        object_key=key,
        backbone_id=artifact.backbone_id,
        labels=artifact.labels,
        metrics=artifact.metrics,
        params=artifact.params,
        dataset_fingerprint=artifact.dataset_fingerprint,
        artifact_sha256=hashlib.sha256(data).hexdigest(),
        state=ModelState.CANDIDATE,
        **tracking,
    )
    session.add(row)
    session.flush()
    session.add(AuditEntry(actor=actor, action=action, model_version_id=row.id, detail=detail))
    return row.id


def champion(registry: Registry) -> ModelVersion | None:
    """The current champion, or None before the first model."""
    with registry.session() as session:
        return session.scalars(
            select(ModelVersion)
            .where(ModelVersion.state == ModelState.CHAMPION)
            .order_by(ModelVersion.promoted_at.desc(), ModelVersion.id.desc())
            .limit(1)
        ).first()


def champion_id(registry: Registry) -> int | None:
    """Only the champion's id: the cheap check predictors run to notice a new champion."""
    with registry.session() as session:
        return session.scalar(
            select(ModelVersion.id)
            .where(ModelVersion.state == ModelState.CHAMPION)
            .order_by(ModelVersion.promoted_at.desc(), ModelVersion.id.desc())
            .limit(1)
        )


def get_version(registry: Registry, version_id: int) -> ModelVersion:
    with registry.session() as session:
        version = session.get(ModelVersion, version_id)
    if version is None:
        raise NotFound(f"Model version {version_id} does not exist: see `classifi models`.")
    return version


def list_versions(registry: Registry) -> list[ModelVersion]:
    """Every model version, newest first."""
    with registry.session() as session:
        return list(session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc())))


def set_champion(
    settings: Settings, registry: Registry, version_id: int, *, actor: str, reason: str
) -> ModelVersion:
    """Make ``version_id`` the champion, archiving the previous one, in one transaction.

    Also records the change in the champion history and the audit log, then moves MLflow's
    ``champion`` alias. Promoting the current champion again changes nothing.
    """
    now = utcnow()
    with registry.session() as session:
        # Lock every version row (a few dozen) so concurrent promotions on PostgreSQL
        # serialise instead of both archiving the same old champion.
        versions = {
            version.id: version
            for version in session.scalars(
                select(ModelVersion).order_by(ModelVersion.id).with_for_update()
            )
        }
        chosen = versions.get(version_id)
        if chosen is None:
            raise NotFound(f"Model version {version_id} does not exist: see `classifi models`.")
        if chosen.state == ModelState.CHAMPION:
            return chosen
        previous = [v for v in versions.values() if v.state == ModelState.CHAMPION]
        for old in previous:
            old.state = ModelState.ARCHIVED
        for open_entry in session.scalars(
            select(ChampionHistory).where(ChampionHistory.ended_at.is_(None))
        ):
            open_entry.ended_at = now
        chosen.state = ModelState.CHAMPION
        chosen.promoted_at = now
        session.add(
            ChampionHistory(model_version_id=chosen.id, started_at=now, reason=reason, actor=actor)
        )
        session.add(
            AuditEntry(
                at=now,
                actor=actor,
                action="promote",
                model_version_id=chosen.id,
                detail={
                    "reason": reason,
                    "previous_champion": previous[0].id if previous else None,
                    "backbone": chosen.backbone_id,
                },
            )
        )

    if chosen.mlflow_version is not None:
        try:
            tracking.set_champion_alias(settings, chosen.mlflow_version)
        except ClassifiError as exc:
            # The registry already decided; the alias only mirrors it for MLflow's UI.
            log.warning(
                "version %s is champion, but MLflow's alias was not moved: %s", chosen.id, exc
            )
    return chosen
