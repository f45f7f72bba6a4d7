"""Model artifacts: one ``.pth`` per trained head, versioned under ``model/YYYY-MM-DD/``.

The file is in ``torch.save``'s format: a plain dict (tensors, strings, numbers, lists,
dicts). It is written and read without torch (:mod:`core.model.pth`; the reader is stricter
than ``torch.load(weights_only=True)``): opening a model never runs code from the file, and
neither training nor prediction needs torch for it.

Names: ``dinov2_classifier_N.pth`` for the specification's backbone and
``<backbone>_classifier_N.pth`` for others, so a file's name never claims a backbone its head
cannot work with. N counts up within the day across every backbone (the Nth model of the day).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
from sqlalchemy import select

from core.errors import ModelError
from core.model.calibration import Calibration
from core.model.head import LinearHead
from core.model.pth import load_pth, save_pth
from core.registry import ModelVersion, Registry
from core.store import MODEL_PREFIX, ObjectStore, check_key, model_day_prefix

log = logging.getLogger(__name__)

ARTIFACT_FORMAT = 1
_NUMBERED = re.compile(r"^[a-z0-9_]+_classifier_(\d+)\.pth$")


@dataclass(frozen=True)
class ModelArtifact:
    """A trained head and everything needed to use it correctly."""

    state_dict: dict[str, np.ndarray]
    backbone_id: str
    preprocessing: dict[str, Any]
    labels: list[str]
    metrics: dict[str, Any]
    dataset_fingerprint: str
    created_at: str  # ISO 8601, UTC
    mlflow_run_id: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    #: sha256 of the backbone's weights file the head was trained on (None: older models).
    backbone_weights_sha256: str | None = None
    #: The runtime and precision of the training embeddings, e.g. "openvino/bf16".
    runtime: str | None = None
    #: Temperature, unsure and out-of-distribution thresholds (None: older models).
    calibration: Calibration | None = None

    @property
    def dim(self) -> int:
        return int(self.state_dict["linear.weight"].shape[1])

    def head(self) -> LinearHead:
        return LinearHead.from_state_dict(self.state_dict, len(self.labels))

    def metadata(self) -> dict[str, Any]:
        return {
            "backbone_id": self.backbone_id,
            "dim": self.dim,
            "preprocessing": self.preprocessing,
            "labels": list(self.labels),
            "metrics": self.metrics,
            "dataset_fingerprint": self.dataset_fingerprint,
            "created_at": self.created_at,
            "mlflow_run_id": self.mlflow_run_id,
            "params": self.params,
            "backbone_weights_sha256": self.backbone_weights_sha256,
            "runtime": self.runtime,
        }


def serialize_artifact(artifact: ModelArtifact) -> bytes:
    """The artifact's bytes (as ``torch.save`` writes them, without torch), verified by reading
    them back the way every predictor reads them before anyone uploads them."""
    state = {name: np.array(array) for name, array in artifact.state_dict.items()}
    content = {"format": ARTIFACT_FORMAT, "state_dict": state, **artifact.metadata()}
    if artifact.calibration is not None:
        content["calibration"] = artifact.calibration.as_record()  # the bank as an array
    data = save_pth(content)
    reloaded = load_artifact(data)
    for name, array in artifact.state_dict.items():
        if not np.array_equal(reloaded.state_dict[name], array):
            raise ModelError(f"The serialized model does not reload identically ({name}).")
    return data


def load_artifact(data: bytes, *, source: str = "the model file") -> ModelArtifact:
    """Parse artifact bytes; :class:`ModelError` if they are not a model this code can use."""
    try:
        raw = load_pth(data)
    except Exception as exc:  # many types for foreign, hostile or truncated files
        raise ModelError(f"{source} is not a readable model: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("format") != ARTIFACT_FORMAT:
        raise ModelError(
            f"{source} is not a ClassifiImage model (format {ARTIFACT_FORMAT}): retrain with "
            "`classifi train`."
        )
    try:
        artifact = ModelArtifact(
            state_dict=dict(raw["state_dict"]),
            backbone_id=str(raw["backbone_id"]),
            preprocessing=dict(raw["preprocessing"]),
            labels=[str(label) for label in raw["labels"]],
            metrics=dict(raw["metrics"]),
            dataset_fingerprint=str(raw["dataset_fingerprint"]),
            created_at=str(raw["created_at"]),
            mlflow_run_id=raw.get("mlflow_run_id"),
            params=dict(raw.get("params") or {}),
            backbone_weights_sha256=raw.get("backbone_weights_sha256"),
            runtime=raw.get("runtime"),
            calibration=(
                Calibration.from_record(raw["calibration"]) if raw.get("calibration") else None
            ),
        )
        artifact.head()  # the tensors must fit the declared labels
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{source} is incomplete or inconsistent: {exc}") from exc
    return artifact


def artifact_name(backbone_id: str, number: int) -> str:
    stem = "dinov2" if backbone_id.startswith("dinov2") else backbone_id
    return f"{stem}_classifier_{number}.pth"


def next_artifact_key(store: ObjectStore, backbone_id: str, day: date) -> str:
    """``model/<day>/<name>_N.pth`` with N one above every model file of that day.

    Counting the files, not the registry rows, means a concurrent training's file, uploaded
    but not yet registered, is never overwritten.
    """
    prefix = model_day_prefix(day)
    numbers = [
        int(match.group(1))
        for key in store.list(prefix)
        if (match := _NUMBERED.match(key[len(prefix) :]))
    ]
    return check_key(prefix + artifact_name(backbone_id, max(numbers, default=0) + 1))


def remove_orphan_artifacts(registry: Registry, store: ObjectStore) -> list[str]:
    """Delete model files that no registry row names, and return their keys.

    Only a training killed between its upload and its registry row leaves one. Each key is
    re-checked against the registry just before it goes, and a training confirms its file
    still exists after committing its row, so a run in flight meanwhile keeps its model.
    """
    with registry.session() as session:
        registered = set(session.scalars(select(ModelVersion.object_key)))
    removed = []
    for key in [key for key in store.list(MODEL_PREFIX) if key not in registered]:
        if not key.endswith(".pth"):
            continue
        with registry.session() as session:
            known = session.scalar(select(ModelVersion.id).where(ModelVersion.object_key == key))
        if known is None:
            store.delete(key)
            removed.append(key)
            log.warning("removed %s: a model file without a registry row (interrupted run)", key)
    return removed
