"""Prediction with the champion: the one model class every front end shares.

A :class:`Predictor` loads the champion (its head from the store, its own backbone) lazily
under a lock, predicts in batches, and swaps to a new champion without a restart: the new
model is loaded completely first, then one reference assignment switches to it, so
predictions already running finish on the model they started with.

Nothing here imports torch: the head is numpy and the backbone runs its exported file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from core.config import Settings
from core.errors import ModelError, ModelLoading, NoChampion
from core.model.artifacts import ModelArtifact, load_artifact
from core.model.backbone import Backbone
from core.model.backbones import get_backbone
from core.model.calibration import Calibration, temperature_of
from core.model.head import LinearHead
from core.model.versions import champion, champion_id, get_version, summary_of
from core.registry import ModelVersion, Registry
from core.store import ObjectStore
from core.wire import ModelSummary, Prediction

log = logging.getLogger(__name__)

REFRESH_INTERVAL_S = 2.0


@dataclass(frozen=True)
class LoadedModel:
    """A version's head with its own backbone, checked to belong together, and what it
    knows of its own answers (None for a model trained before calibration)."""

    info: ModelSummary
    head: LinearHead
    backbone: Backbone
    calibration: Calibration | None = None

    @property
    def temperature(self) -> float:
        return temperature_of(self.calibration)

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """Calibrated label probabilities ``(N, n_labels)``."""
        return self.head.probabilities(embeddings, self.temperature)

    def answers(
        self, embeddings: np.ndarray, unsure_below: float, heatmaps: Sequence[str | None] = ()
    ) -> list[Prediction]:
        """One prediction per embedding. ``unsure_below`` stands for a model without its
        own threshold (trained before calibration; such a model never says out of
        distribution)."""
        probabilities = self.probabilities(embeddings)
        if self.calibration is not None:
            unsure_below = self.calibration.unsure_below
            strange = self.calibration.out_of_distribution(embeddings)
        else:
            strange = np.zeros(len(embeddings), dtype=bool)
        labels = self.info.labels
        predictions = []
        for index, row in enumerate(probabilities):
            best = int(row.argmax())
            predictions.append(
                Prediction(
                    label=labels[best],
                    confidence=float(row[best]),
                    probabilities={label: float(p) for label, p in zip(labels, row, strict=True)},
                    model_version=self.info.version,
                    backbone=self.info.backbone,
                    unsure=bool(row[best] < unsure_below),
                    out_of_distribution=bool(strange[index]),
                    heatmap=heatmaps[index] if heatmaps else None,
                )
            )
        return predictions


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


def verified_artifact(store: ObjectStore, version: ModelVersion) -> ModelArtifact:
    """``version``'s artifact, checked against the registry's checksum, backbone and labels."""
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
    return artifact


def load_model(settings: Settings, store: ObjectStore, version: ModelVersion) -> LoadedModel:
    """Read ``version``'s artifact, verify it, and pair its head with its own backbone."""
    source = f"Model version {version.id} ({version.object_key})"
    artifact = verified_artifact(store, version)
    head = artifact.head()
    backbone = get_backbone(
        artifact.backbone_id, settings, weights_sha256=artifact.backbone_weights_sha256
    )
    check_compatible(artifact, backbone, source=source)
    # The head's own network, on the fastest runtime that leaves its answers unchanged on
    # the probe photos (usually the backbone above).
    backbone = get_backbone(
        artifact.backbone_id,
        settings,
        weights_sha256=artifact.backbone_weights_sha256,
        head=head,
    )
    return LoadedModel(
        info=summary_of(version), head=head, backbone=backbone, calibration=artifact.calibration
    )


def predict_with(
    model: LoadedModel, images: Sequence[Image.Image], batch_size: int, unsure_below: float
) -> list[Prediction]:
    embeddings = model.backbone.embed(images, batch_size=batch_size)
    return model.answers(embeddings, unsure_below)


def explain_with(
    model: LoadedModel, images: Sequence[Image.Image], unsure_below: float
) -> list[Prediction]:
    """Predictions with a heatmap each (a PNG, base64), from the same backbone pass."""
    from core.model.explain import heatmap_png

    embeddings, features = model.backbone.embed_with_maps(images)
    maps = model.head.class_maps(features)
    best = model.probabilities(embeddings).argmax(axis=1)
    pictures = [
        base64.b64encode(
            heatmap_png(image, maps[index, best[index]], model.backbone.preprocessing_steps)
        ).decode("ascii")
        for index, image in enumerate(images)
    ]
    return model.answers(embeddings, unsure_below, pictures)


class Predictor:
    """Thread-safe classification with the current champion.

    Call :meth:`refresh` as often as you like (e.g. per request): it asks the registry at
    most once per ``refresh_interval`` seconds and, when the champion changed, loads the new
    one on a background thread. Predictions keep using the current model until the new one
    is ready, so no caller ever waits for a swap.
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
        self._load_lock = threading.Lock()  # held while a model loads
        self._state_lock = threading.Lock()  # guards the fields below; never held for long
        self._checked_at = float("-inf")
        self._swap: threading.Thread | None = None
        self._failed_version: int | None = None  # not retried until the champion changes

    def ensure_loaded(self) -> LoadedModel:
        """The loaded champion, loading it now on first use; :class:`NoChampion` if none.

        Blocks for the load: for start-up, pool threads and the command line, never for a
        request handler (it uses :meth:`current`)."""
        model = self._model
        if model is not None:
            return model
        with self._load_lock:
            model = self._model
            if model is None:
                version = champion(self.registry)
                if version is None:
                    raise NoChampion("No model yet: run `classifi train`.")
                model = load_model(self.settings, self.store, version)
                self._install(model)
            return model

    def current(self) -> LoadedModel:
        """The loaded champion without waiting: :class:`ModelLoading` while the first model
        loads in the background, :class:`NoChampion` when there is none."""
        model = self._model
        if model is not None:
            return model
        self.refresh()
        with self._state_lock:
            loading = self._swap is not None and self._swap.is_alive()
        if loading:
            raise ModelLoading("The model is loading: try again in a few seconds.")
        raise NoChampion("No model yet: train one (`classifi train`).")

    def refresh(self, *, force: bool = False) -> bool:
        """Start loading the registry's champion in the background if it changed; True when
        a load was started. Cheap between checks (no query before ``refresh_interval``)."""
        with self._state_lock:
            if not force and time.monotonic() - self._checked_at < self.refresh_interval:
                return False
            self._checked_at = time.monotonic()
            if self._swap is not None and self._swap.is_alive():
                return False
        wanted = champion_id(self.registry)
        served = self._model.info.version if self._model is not None else None
        if wanted is None or wanted == served or wanted == self._failed_version:
            return False
        with self._state_lock:
            if self._swap is not None and self._swap.is_alive():
                return False
            self._swap = threading.Thread(
                target=self._load_in_background, args=(wanted,), name="model-swap", daemon=True
            )
            self._swap.start()
        return True

    def wait_for_swap(self, timeout: float | None = None) -> None:
        """Wait for a background load started by :meth:`refresh` (tests, the command line)."""
        with self._state_lock:
            swap = self._swap
        if swap is not None:
            swap.join(timeout)

    def _load_in_background(self, wanted: int) -> None:
        served = self._model.info.version if self._model is not None else None
        try:
            with self._load_lock:
                loaded = load_model(self.settings, self.store, get_version(self.registry, wanted))
                self._install(loaded)
        except Exception:  # the thread's boundary: the old model keeps serving
            self._failed_version = wanted
            log.exception("cannot load champion %s; still serving version %s", wanted, served)
            return
        log.info("switched from model version %s to %s", served, wanted)

    def _install(self, model: LoadedModel) -> None:
        self._model = model  # one reference assignment: the swap is atomic
        self._failed_version = None
        self._checked_at = time.monotonic()
        log.info("loaded model version %s (backbone %s)", model.info.version, model.info.backbone)

    def predict(
        self, images: Sequence[Image.Image], *, batch_size: int | None = None, wait: bool = True
    ) -> list[Prediction]:
        """One :class:`Prediction` per RGB image (checked by ``core.imaging``), in order.

        With ``wait=False`` (request handlers) a model still loading raises
        :class:`ModelLoading` instead of being waited for."""
        model = self.ensure_loaded() if wait else self.current()
        return predict_with(
            model, images, batch_size or self.settings.embed_batch_size, self.settings.unsure_below
        )

    def explain(self, images: Sequence[Image.Image], *, wait: bool = True) -> list[Prediction]:
        """:meth:`predict` with a heatmap of each photo: where the model saw its label."""
        model = self.ensure_loaded() if wait else self.current()
        return explain_with(model, images, self.settings.unsure_below)

    @property
    def info(self) -> ModelSummary:
        """The loaded champion's version, backbone, labels and metrics (loading it if needed)."""
        return self.ensure_loaded().info
