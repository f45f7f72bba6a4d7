"""``status_report``: counts per label and status, and the champion, on both registries."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from core.config import Settings
from core.registry import ModelState, ModelVersion, Photo, PhotoStatus, Registry
from core.status import hide_password, status_report


def photo(number: int, label: str | None, status: PhotoStatus) -> Photo:
    sha = f"{number:064x}"
    return Photo(
        url_source=f"/photos/{number}.jpg",
        label=label,
        url_s3=f"file:///bucket/raw/{sha}.jpg",
        object_key=f"raw/{label or 'new_data/pending_validation'}/{sha}.jpg",
        sha256=sha,
        status=status,
        width=250,
        height=180,
        size_bytes=1000,
        image_format="JPEG",
    )


def model(version: int, state: ModelState, accuracy: float) -> ModelVersion:
    return ModelVersion(
        id=version,
        object_key=f"model/2026-01-01/dinov2_classifier_{version}.pth",
        backbone_id="dinov2_vits14",
        labels=["dandelion", "grass"],
        metrics={"accuracy": accuracy},
        params={},
        dataset_fingerprint="f" * 64,
        artifact_sha256="a" * 64,
        state=state,
        created_at=datetime(2026, 1, version, tzinfo=UTC),
    )


def test_counts_and_champion(
    registry_url: str, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(registry_url=registry_url, torch_home=tmp_path / "torch")
    registry = Registry(registry_url)
    assert status_report(settings, registry)["champion"] is None

    with registry.session() as session:
        session.add_all(
            [
                photo(1, "grass", PhotoStatus.TRAINED),
                photo(2, "grass", PhotoStatus.TRAINED),
                photo(3, "dandelion", PhotoStatus.VALIDATED),
                photo(4, None, PhotoStatus.PENDING),
                model(1, ModelState.ARCHIVED, 0.91),
                model(2, ModelState.CHAMPION, 0.97),
                model(3, ModelState.CANDIDATE, 0.99),
            ]
        )

    report = status_report(settings, registry)

    assert report["photos"] == {
        "total": 4,
        "by_label": {"dandelion": 1, "grass": 2, "unlabelled": 1},
        "by_status": {"pending": 1, "validated": 1, "rejected": 0, "trained": 2},
        "by_label_and_status": {
            "dandelion": {"validated": 1},
            "grass": {"trained": 2},
            "unlabelled": {"pending": 1},
        },
    }
    champion = report["champion"]
    assert (champion["version"], champion["backbone"], champion["accuracy"]) == (
        2,
        "dinov2_vits14",
        0.97,
    )
    assert champion["created_at"].startswith("2026-01-02")
    # No DINOv2 weights in the temp torch home: auto says it falls back, and why.
    assert report["backbone_in_use"]["id"] == "efficientnet_lite0"
    assert "no DINOv2 weights" in report["backbone_in_use"]["reason"]
    registry.dispose()


def test_passwords_never_show() -> None:
    assert (
        hide_password("postgresql+psycopg2://classifi:s3cret@db:5432/classifi")
        == "postgresql+psycopg2://classifi:***@db:5432/classifi"
    )
    assert hide_password("redis://:s3cret@cache:6379/0") == "redis://:***@cache:6379/0"
    assert hide_password("sqlite:////home/me/registry.db") == "sqlite:////home/me/registry.db"
