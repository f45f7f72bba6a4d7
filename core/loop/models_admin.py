"""Model administration: list versions, promote one by hand, roll back in one step.

The champion changes only through :func:`core.model.versions.set_champion`, which keeps the
champion history and the audit log and moves MLflow's alias; every running Predictor picks
the change up on its next ``refresh()``.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import select

from core.config import Settings
from core.errors import Conflict, ModelError, NotFound
from core.model.versions import champion, get_version, list_versions, set_champion, summary_of
from core.registry import ChampionHistory, ModelVersion, Registry
from core.store import ObjectStore
from core.wire import ChampionPeriod, ModelSummary


def list_models(registry: Registry) -> list[ModelSummary]:
    """Every version, newest first, with its metrics, state and dates."""
    return [summary_of(row) for row in list_versions(registry)]


def champion_history(registry: Registry) -> list[ChampionPeriod]:
    """Which version was champion when, newest first."""
    with registry.session() as session:
        rows = session.scalars(select(ChampionHistory).order_by(ChampionHistory.id.desc()))
        return [
            ChampionPeriod(
                version=row.model_version_id,
                started_at=row.started_at,
                ended_at=row.ended_at,
                reason=row.reason,
                actor=row.actor,
            )
            for row in rows
        ]


def _check_artifact(store: ObjectStore, version: ModelVersion) -> None:
    """Only a completely written model may become champion."""
    try:
        data = store.get(version.object_key)
    except NotFound:
        raise ModelError(
            f"Model version {version.id} has no file at {version.object_key}: it cannot be "
            "promoted. Run `classifi doctor` and retrain."
        ) from None
    if hashlib.sha256(data).hexdigest() != version.artifact_sha256:
        raise ModelError(
            f"Model version {version.id}'s file {version.object_key} does not match its "
            "checksum: it cannot be promoted. Promote another version or retrain."
        )


def promote(
    settings: Settings,
    registry: Registry,
    store: ObjectStore,
    version_id: int,
    *,
    actor: str,
    reason: str | None = None,
) -> ModelSummary:
    """Make ``version_id`` the champion by hand (an admin may overrule the gate)."""
    version = get_version(registry, version_id)
    if version.labels != list(settings.labels):
        raise Conflict(
            f"Model version {version_id} knows the labels {version.labels}, not the configured "
            f"{list(settings.labels)}: promote a model of the current label set."
        )
    _check_artifact(store, version)
    chosen = set_champion(
        settings, registry, version_id, actor=actor, reason=reason or f"promoted by {actor}"
    )
    return summary_of(chosen)


def rollback(
    settings: Settings, registry: Registry, store: ObjectStore, *, actor: str
) -> ModelSummary:
    """Make the previous champion the champion again, in one step.

    "Previous" is the latest champion in the history other than the current one, so rolling
    back twice returns to where it started.
    """
    current = champion(registry)
    if current is None:
        raise NotFound("There is no champion to roll back from.")
    previous = next(
        (period.version for period in champion_history(registry) if period.version != current.id),
        None,
    )
    if previous is None:
        raise NotFound(f"Version {current.id} is the only champion there has been.")
    return promote(
        settings,
        registry,
        store,
        previous,
        actor=actor,
        reason=f"rollback from version {current.id} by {actor}",
    )
