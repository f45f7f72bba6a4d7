"""Training: a linear head on cached embeddings, tracked in MLflow (where it is installed),
published as a version. The head trains with torch where it is installed, else with numpy
(:mod:`core.model.fitting`: the same training), and the trainer is recorded in the params.

The steps are ordered so that a training that fails at any point leaves no model behind:
the artifact is serialized and verified in memory, registered in MLflow, uploaded to the
store, and only then recorded in the registry. An exception removes whatever was already
written; a killed process can leave at most an unregistered file, which the next training
removes (:func:`core.model.artifacts.remove_orphan_artifacts`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

import numpy as np
from sqlalchemy import select

from core.config import Settings
from core.errors import Cancelled, ClassifiError, TrainingRefused, UnknownLabel
from core.model.artifacts import (
    ModelArtifact,
    next_artifact_key,
    remove_orphan_artifacts,
    serialize_artifact,
)
from core.model.backbone import Backbone
from core.model.backbones import ensure_export, get_backbone, resolve_backbone_id
from core.model.calibration import calibrate
from core.model.embeddings import EmbeddingCache
from core.model.exports import probe_photos
from core.model.fitting import default_trainer, fit_head
from core.model.metrics import (
    CALIBRATION_KEY,
    HISTORY_KEY,
    EpochStats,
    classification_metrics,
    flat_metrics,
)
from core.model.predictor import load_model
from core.model.tracking import TrainingRun, UntrackedRun, start_run
from core.model.versions import add_candidate, champion, get_version, set_champion
from core.registry import Photo, PhotoStatus, Registry
from core.store import ObjectStore

log = logging.getLogger(__name__)

#: ``progress(stage, done, total)``; stage is "embed" (photos not yet cached) or "train" (epochs).
#: A progress that also has a method ``epoch(stats)`` gets each epoch's
#: :class:`~core.model.metrics.EpochStats` (the desktop draws the curves as training runs).
#: Raising :class:`~core.errors.Cancelled` from it stops the training, leaving no model.
Progress = Callable[[str, int, int], None]


class LabelledPhotoLike(Protocol):
    """Anything with a stored photo's sha256, object key and label (e.g. a ``Photo`` row)."""

    @property
    def sha256(self) -> str: ...
    @property
    def object_key(self) -> str: ...
    @property
    def label(self) -> str | None: ...


class LabelledPhoto(NamedTuple):
    sha256: str
    object_key: str
    label: str


@dataclass(frozen=True)
class TrainingResult:
    version_id: int
    object_key: str
    backbone_id: str
    labels: list[str]
    metrics: dict[str, Any]
    mlflow_run_id: str | None  # None where MLflow is not installed
    mlflow_version: str | None
    became_champion: bool
    counts: dict[str, int]  # photos per label in the whole dataset
    train_size: int
    validation_size: int
    dataset_fingerprint: str
    #: The held-out photos behind ``metrics``: compare another model on exactly these.
    validation_photos: list[LabelledPhoto]


def training_set(registry: Registry) -> list[LabelledPhoto]:
    """The registered training photos (status TRAINED), ordered by sha256."""
    with registry.session() as session:
        rows = session.execute(
            select(Photo.sha256, Photo.object_key, Photo.label)
            .where(Photo.status == PhotoStatus.TRAINED)
            .order_by(Photo.sha256)
        ).all()
    return [LabelledPhoto(sha256, key, label or "") for sha256, key, label in rows]


def dataset_fingerprint(photos: Sequence[LabelledPhotoLike]) -> str:
    """sha256 of the sorted ``<sha256>:<label>`` lines: the same data gives the same value."""
    lines = sorted(f"{photo.sha256}:{photo.label}" for photo in photos)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def check_trainable(photos: Sequence[LabelledPhotoLike], settings: Settings) -> dict[str, int]:
    """Photos per configured label; :class:`TrainingRefused` if they cannot train a model."""
    counts = Counter(photo.label for photo in photos)
    configured = list(settings.labels)
    unknown = sorted(str(label) for label in counts if label not in configured)
    missing = [label for label in configured if counts[label] == 0]
    if unknown or missing:
        problems = []
        if unknown:
            problems.append(f"labels not in the configuration: {', '.join(unknown)}")
        if missing:
            problems.append(f"configured labels without photos: {', '.join(missing)}")
        raise TrainingRefused(
            f"The photos' labels differ from the configured labels {configured} "
            f"({'; '.join(problems)}). Fix the setting labels (CLASSIFI_LABELS) or ingest "
            "photos for every configured label."
        )
    few = {
        label: counts[label]
        for label in configured
        if counts[label] < settings.min_photos_per_label
    }
    if few:
        shown = ", ".join(f"{label}: {count}" for label, count in few.items())
        raise TrainingRefused(
            f"Too few photos to train: {shown}; every label needs at least "
            f"{settings.min_photos_per_label} (setting min_photos_per_label). Ingest more photos."
        )
    return {label: counts[label] for label in configured}


def validation_split(
    photos: Sequence[LabelledPhotoLike], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Stratified, seeded split into (train, validation) indices.

    A photo is held out when the seeded hash of its sha256, read as a number in [0, 1), is
    below ``fraction``. Its side never depends on the other photos, so the holdout stays
    fixed as photos are added and a candidate is never trained on the champion's holdout.
    Each label keeps at least one photo on each side.
    """
    by_label: dict[str | None, list[tuple[float, int]]] = {}
    for index, photo in enumerate(photos):
        digest = hashlib.sha256(f"{seed}:{photo.sha256}".encode()).digest()
        by_label.setdefault(photo.label, []).append((int.from_bytes(digest[:8]) / 2**64, index))
    train, validation = [], []
    for ranked in by_label.values():
        ranked.sort()
        held_out = sum(1 for position, _ in ranked if position < fraction)
        held_out = min(len(ranked) - 1, max(1, held_out))
        validation += [index for _, index in ranked[:held_out]]
        train += [index for _, index in ranked[held_out:]]
    return sorted(train), sorted(validation)


def _embed(
    settings: Settings,
    registry: Registry,
    store: ObjectStore,
    backbone: Backbone,
    photos: Sequence[LabelledPhotoLike],
    progress: Progress | None,
) -> np.ndarray:
    cache = EmbeddingCache(registry, store, backbone, batch_size=settings.embed_batch_size)
    on_batch = (lambda done, total: progress("embed", done, total)) if progress else None
    return cache.vectors([(p.sha256, p.object_key) for p in photos], progress=on_batch)


def train_model(
    settings: Settings,
    registry: Registry,
    store: ObjectStore,
    *,
    backbone_id: str | None = None,
    photos: Sequence[LabelledPhotoLike] | None = None,
    promote_if_first: bool = True,
    progress: Progress | None = None,
    actor: str = "cli",
) -> TrainingResult:
    """Train a head on ``photos`` (default: the training set) and publish it as a candidate.

    With ``promote_if_first`` the first model of a system without champion becomes champion.
    Raises :class:`TrainingRefused` when the data cannot train a meaningful model.
    """
    backbone_id = backbone_id or resolve_backbone_id(settings)
    photos = list(photos) if photos is not None else training_set(registry)
    counts = check_trainable(photos, settings)
    labels = list(settings.labels)
    fingerprint = dataset_fingerprint(photos)
    remove_orphan_artifacts(registry, store)

    # Training makes the backbone's exported file in this home (the first time, with the
    # first photos as its parity probe): every process that predicts with the model finds it.
    ensure_export(backbone_id, settings, probe_photos=lambda: probe_photos(store, photos))
    backbone = get_backbone(backbone_id, settings)
    trainer = default_trainer()
    vectors = _embed(settings, registry, store, backbone, photos, progress)
    targets = np.array([labels.index(str(photo.label)) for photo in photos])
    train, validation = validation_split(photos, settings.validation_fraction, settings.split_seed)
    params = {
        "backbone": backbone_id,
        "backbone_weights_sha256": backbone.weights_sha256,
        "runtime": backbone.kind,
        "trainer": trainer,
        "learning_rate": settings.learning_rate,
        "epochs": settings.epochs,
        "batch_size": settings.train_batch_size,
        "split_seed": settings.split_seed,
        "validation_fraction": settings.validation_fraction,
        "dataset_fingerprint": fingerprint,
        "train_size": len(train),
        "validation_size": len(validation),
        **{f"photos_{label}": count for label, count in counts.items()},
    }
    run = start_run(settings, run_name=f"{backbone_id}-{len(photos)}-photos", params=params)
    report_epoch = getattr(progress, "epoch", None)

    try:

        def on_epoch(stats: EpochStats) -> None:
            # epoch_val_*, as val_* names the final validation metrics logged after training
            run.log_metrics(
                {
                    "train_loss": stats.train_loss,
                    "train_accuracy": stats.train_accuracy,
                    "epoch_val_loss": stats.val_loss,
                    "epoch_val_accuracy": stats.val_accuracy,
                },
                stats.epoch,
            )
            if report_epoch is not None:
                report_epoch(stats)
            if progress:
                progress("train", stats.epoch, settings.epochs)

        head, history = fit_head(
            vectors[train],
            targets[train],
            len(labels),
            validation=(vectors[validation], targets[validation]),
            learning_rate=settings.learning_rate,
            epochs=settings.epochs,
            batch_size=settings.train_batch_size,
            seed=settings.split_seed,
            on_epoch=on_epoch,
            trainer=trainer,
        )
        calibration = calibrate(
            head,
            vectors[train],
            vectors[validation],
            targets[validation],
            seed=settings.split_seed,
        )
        # Calibrated: the confidences the model will answer with (the labels are the same).
        metrics = classification_metrics(
            targets[validation],
            head.probabilities(vectors[validation], calibration.temperature),
            labels,
        )
        metrics[CALIBRATION_KEY] = calibration.summary()
        run.log_metrics({f"val_{name}": value for name, value in flat_metrics(metrics).items()})
        run.log_dict(metrics, "validation_metrics.json")
        # Kept with the version (artifact and registry row) for the training-curve plots.
        metrics[HISTORY_KEY] = [asdict(stats) for stats in history]
        artifact = ModelArtifact(
            state_dict=head.state_dict(),
            backbone_id=backbone_id,
            preprocessing=backbone.preprocessing,
            labels=labels,
            metrics=metrics,
            dataset_fingerprint=fingerprint,
            created_at=datetime.now(UTC).isoformat(),
            mlflow_run_id=run.run_id,
            params=params,
            backbone_weights_sha256=backbone.weights_sha256,
            runtime=backbone.kind,
            calibration=calibration,
        )
        version_id, key, mlflow_version = _publish(registry, store, run, artifact, actor)
    except BaseException as exc:
        with contextlib.suppress(ClassifiError):
            run.finish("KILLED" if isinstance(exc, KeyboardInterrupt | Cancelled) else "FAILED")
        raise
    try:
        run.set_tags({"registry_version": version_id, "object_key": key})
        run.finish()
    except ClassifiError as exc:  # the model is published; only its MLflow run stays open
        log.warning(
            "model version %s is saved, but its MLflow run was not closed: %s", version_id, exc
        )
    log.info("trained model version %s (%s): accuracy %.3f", version_id, key, metrics["accuracy"])

    became_champion = promote_if_first and champion(registry) is None
    if became_champion:
        set_champion(settings, registry, version_id, actor=actor, reason="first model")
    return TrainingResult(
        version_id=version_id,
        object_key=key,
        backbone_id=backbone_id,
        labels=labels,
        metrics=metrics,
        mlflow_run_id=run.run_id,
        mlflow_version=mlflow_version,
        became_champion=became_champion,
        counts=counts,
        train_size=len(train),
        validation_size=len(validation),
        dataset_fingerprint=fingerprint,
        validation_photos=[
            LabelledPhoto(photos[i].sha256, photos[i].object_key, str(photos[i].label))
            for i in validation
        ],
    )


def _publish(
    registry: Registry,
    store: ObjectStore,
    run: TrainingRun | UntrackedRun,
    artifact: ModelArtifact,
    actor: str,
) -> tuple[int, str, str | None]:
    """Serialize, register in MLflow, upload, then record the version: (id, key, MLflow version).

    Until the registry row commits, any failure removes the file and the MLflow version.
    """
    data = serialize_artifact(artifact)
    key = next_artifact_key(store, artifact.backbone_id, datetime.now(UTC).date())
    mlflow_version: str | None = None
    try:
        mlflow_version = run.register_model(data, key.rsplit("/", 1)[1])
        store.put(key, data)
        with registry.session() as session:
            version_id = add_candidate(
                session,
                artifact,
                key,
                data,
                actor=actor,
                action="train",
                detail={"backbone": artifact.backbone_id, **flat_metrics(artifact.metrics)},
                mlflow_run_id=run.run_id,
                mlflow_version=mlflow_version,
            )
    except BaseException:
        _undo(store, run, key, mlflow_version)
        raise
    # Committed: the model exists. A concurrent training's orphan sweep may have caught the
    # file between its upload and the row; put it back.
    if not store.exists(key):
        store.put(key, data)
    return version_id, key, mlflow_version


def _undo(
    store: ObjectStore, run: TrainingRun | UntrackedRun, key: str, mlflow_version: str | None
) -> None:
    """Remove what a failed training wrote before its registry row: file and MLflow version.

    The key is deleted even if the upload seemed to fail: a write can land and its answer
    be lost. Cleanup failures are logged, never raised over the original error.
    """
    try:
        store.delete(key)
    except ClassifiError:
        log.exception("could not remove %s after a failed training", key)
    if mlflow_version is not None:
        try:
            run.delete_model_version(mlflow_version)
        except ClassifiError:
            log.exception(
                "could not remove MLflow version %s after a failed training", mlflow_version
            )


def evaluate_version(
    settings: Settings,
    registry: Registry,
    store: ObjectStore,
    version_id: int,
    photos: Sequence[LabelledPhotoLike],
    *,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The metrics of model ``version_id`` on labelled ``photos``, from cached embeddings.

    Photos with labels the model does not know raise :class:`UnknownLabel`.
    """
    if not photos:
        raise ValueError("evaluate_version needs at least one photo")
    model = load_model(settings, store, get_version(registry, version_id))
    labels = model.info.labels
    unknown = sorted({str(photo.label) for photo in photos} - set(labels))
    if unknown:
        raise UnknownLabel(
            f"Model version {version_id} knows the labels {labels}, not {', '.join(unknown)}."
        )
    vectors = _embed(settings, registry, store, model.backbone, photos, progress)
    targets = np.array([labels.index(str(photo.label)) for photo in photos])
    return classification_metrics(targets, model.probabilities(vectors), labels)
