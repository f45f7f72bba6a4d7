"""Prediction with the champion: the one model class every front end shares.

A :class:`Predictor` loads the champion (its head from the store, its own backbone) lazily
under a lock, predicts in batches, and swaps to a new champion without a restart: the new
model is loaded completely first, then one reference assignment switches to it, so
predictions already running finish on the model they started with.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from core.config import Settings
from core.errors import ClassifiError, ModelError, NoChampion
from core.model.artifacts import ModelArtifact, load_artifact
from core.model.backbone import Backbone
from core.model.backbones import get_backbone
from core.model.head import LinearHead
from core.model.prediction import Prediction
from core.model.versions import ModelSummary, champion, champion_id, get_version
from core.registry import ModelVersion, Registry
from core.store import ObjectStore

log = logging.getLogger(__name__)

REFRESH_INTERVAL_S = 2.0


@dataclass(frozen=True)
class LoadedModel:
    """A version's head with its own backbone, checked to belong together."""

    info: ModelSummary
    head: LinearHead
    backbone: Backbone


def _canonical(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True))


def check_compatible(artifact: ModelArtifact, backbone: Backbone, *, source: str) -> None:
    """Raise :class:`ModelError` unless ``artifact``'s head was trained on ``backbone``."""
    if artifact.backbone_id != backbone.id:
        raise ModelError(
            f"{source} was trained on backbone {artifact.backbone_id!r}, not {backbone.id!r}: "
            "a head only works with its own backbone."
        )
    if artifact.dim != backbone.dim:
        raise ModelError(
            f"{source} expects {artifact.dim}-d embeddings but {backbone.id} gives "
            f"{backbone.dim}: the file does not belong to this backbone. Retrain."
        )
    if _canonical(artifact.preprocessing) != _canonical(backbone.preprocessing):
        raise ModelError(
            f"{source} was trained with another preprocessing than {backbone.id} now uses "
            f"({artifact.preprocessing} vs {backbone.preprocessing}): retrain with "
            "`classifi train`."
        )


def load_model(settings: Settings, store: ObjectStore, version: ModelVersion) -> LoadedModel:
    """Read ``version``'s artifact, verify it, and pair its head with its own backbone."""
    source = f"Model version {version.id} ({version.object_key})"
    data = store.get(version.object_key)
    if hashlib.sha256(data).hexdigest() != version.artifact_sha256:
        raise ModelError(
            f"{source} does not match the checksum recorded in the registry: the file was "
            "changed or damaged. Promote another version or retrain."
        )
    artifact = load_artifact(data, source=source)
    if artifact.backbone_id != version.backbone_id or artifact.labels != list(version.labels):
        raise ModelError(
            f"{source}: the file says backbone {artifact.backbone_id!r} and labels "
            f"{artifact.labels}, the registry {version.backbone_id!r} and {version.labels}."
        )
    backbone = get_backbone(artifact.backbone_id, settings)
    check_compatible(artifact, backbone, source=source)
    return LoadedModel(info=ModelSummary.of(version), head=artifact.head(), backbone=backbone)


def predict_with(
    model: LoadedModel, images: Sequence[Image.Image], batch_size: int
) -> list[Prediction]:
    embeddings = model.backbone.embed(images, batch_size=batch_size)
    probabilities = model.head.probabilities(embeddings)
    labels = model.info.labels
    predictions = []
    for row in probabilities:
        best = int(row.argmax())
        predictions.append(
            Prediction(
                label=labels[best],
                confidence=float(row[best]),
                probabilities={label: float(p) for label, p in zip(labels, row, strict=True)},
                model_version=model.info.version,
                backbone=model.info.backbone,
            )
        )
    return predictions


class Predictor:
    """Thread-safe classification with the current champion.

    Call :meth:`refresh` as often as you like (e.g. per request): it asks the registry at
    most once per ``refresh_interval`` seconds and swaps in a new champion when there is one.
    """

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        store: ObjectStore,
        *,
        refresh_interval: float = REFRESH_INTERVAL_S,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.store = store
        self.refresh_interval = refresh_interval
        self._model: LoadedModel | None = None
        self._load_lock = threading.Lock()
        self._checked_at = float("-inf")

    def ensure_loaded(self) -> LoadedModel:
        """The loaded champion, loading it on first use; :class:`NoChampion` if none."""
        model = self._model
        if model is not None:
            return model
        with self._load_lock:
            if self._model is None:
                version = champion(self.registry)
                if version is None:
                    raise NoChampion("No model yet: run `classifi train`.")
                self._model = load_model(self.settings, self.store, version)
                self._checked_at = time.monotonic()
                log.info(
                    "loaded model version %s (backbone %s)", version.id, self._model.info.backbone
                )
            return self._model

    def refresh(self, *, force: bool = False) -> bool:
        """Swap to the registry's champion if it changed; True when a new model was loaded.

        Cheap between checks (no query before ``refresh_interval`` has passed) and never
        blocks predictions: they keep using the current model until the new one is ready.
        """
        if not force and time.monotonic() - self._checked_at < self.refresh_interval:
            return False
        with self._load_lock:
            if not force and time.monotonic() - self._checked_at < self.refresh_interval:
                return False  # another thread just checked
            self._checked_at = time.monotonic()
            current = self._model.info.version if self._model is not None else None
            wanted = champion_id(self.registry)
            if wanted is None or wanted == current:
                return False
            try:
                loaded = load_model(self.settings, self.store, get_version(self.registry, wanted))
            except ClassifiError:
                if self._model is None:
                    raise
                log.exception("cannot load champion %s; still serving version %s", wanted, current)
                return False
            self._model = loaded  # one reference assignment: the swap is atomic
            log.info("switched from model version %s to %s", current, wanted)
            return True

    def predict(
        self, images: Sequence[Image.Image], *, batch_size: int | None = None
    ) -> list[Prediction]:
        """One :class:`Prediction` per RGB image (checked by ``core.imaging``), in order."""
        model = self.ensure_loaded()
        return predict_with(model, images, batch_size or self.settings.embed_batch_size)

    @property
    def info(self) -> ModelSummary:
        """The loaded champion's version, backbone, labels and metrics (loading it if needed)."""
        return self.ensure_loaded().info
