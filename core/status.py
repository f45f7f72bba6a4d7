"""What ``classifi status`` reports: where the stores live, photo counts, the current model
and the inference runtime it runs on (and why)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import func, select

from core.config import Settings
from core.model.backbones import backbone_choice, recorded_runtime
from core.model.versions import champion
from core.registry import Photo, PhotoStatus, Registry


def hide_password(url: str) -> str:
    """``scheme://user:***@host/…``: a URL safe to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def status_report(settings: Settings, registry: Registry) -> dict[str, Any]:
    """A JSON-ready summary; its shape is documented by ``classifi status --help``."""
    with registry.session() as session:
        counts = session.execute(
            select(Photo.label, Photo.status, func.count()).group_by(Photo.label, Photo.status)
        ).all()
    current = champion(registry)
    backbone_id, backbone_reason = backbone_choice(settings)
    # The runtime of the champion's own network when there is one, else of the backbone
    # training would use now.
    runtime = (
        recorded_runtime(
            settings, current.backbone_id, current.params.get("backbone_weights_sha256")
        )
        if current is not None
        else recorded_runtime(settings, backbone_id)
    )

    by_label = dict.fromkeys(settings.labels, 0)
    by_status = dict.fromkeys((status.value for status in PhotoStatus), 0)
    by_label_and_status: dict[str, dict[str, int]] = {}
    for label, status, count in counts:
        name = label or "unlabelled"
        by_label[name] = by_label.get(name, 0) + count
        by_status[status.value] += count
        by_label_and_status.setdefault(name, {})[status.value] = count

    return {
        "home": str(settings.home),
        "stores": {
            "registry": registry.safe_url,
            "store": hide_password(settings.store_url),
            "queue": hide_password(settings.queue_url),
            "mlflow": hide_password(settings.mlflow_tracking_uri),
        },
        "labels": list(settings.labels),
        "backbone": settings.backbone,
        "backbone_in_use": {"id": backbone_id, "reason": backbone_reason},
        "runtime_in_use": runtime,
        "photos": {
            "total": sum(by_status.values()),
            "by_label": by_label,
            "by_status": by_status,
            "by_label_and_status": by_label_and_status,
        },
        "champion": None
        if current is None
        else {
            "version": current.id,
            "backbone": current.backbone_id,
            "accuracy": current.metrics.get("accuracy"),
            "created_at": current.created_at.isoformat(),
            "promoted_at": current.promoted_at.isoformat() if current.promoted_at else None,
        },
    }
