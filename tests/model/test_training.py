"""Training on the 340 shared photos: accuracy, the cache, artifacts, refusals, interruptions."""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from sqlalchemy import delete, func, select

from core.errors import StoreError, TrainingRefused
from core.ingest import ingest, read_source
from core.model.artifacts import load_artifact
from core.model.backbones import EFFICIENTNET_LITE0, get_backbone
from core.model.embeddings import EmbeddingCache
from core.model.metrics import (
    classification_metrics,
    epoch_history,
    expected_calibration_error,
    roc_auc,
)
from core.model.training import (
    LabelledPhoto,
    dataset_fingerprint,
    evaluate_version,
    train_model,
    training_set,
    validation_split,
)
from core.model.versions import champion, get_version, list_versions
from core.registry import (
    AuditEntry,
    ChampionHistory,
    Embedding,
    ModelState,
    ModelVersion,
)
from core.store import LocalStore, ObjectStore
from tests.installation import System, offline_settings
from tests.model.conftest import TrainedSystem, copy_home


def model_files(store: ObjectStore) -> list[str]:
    return list(store.list("model/"))


def version_count(system: System) -> int:
    with system.registry.session() as session:
        return int(session.scalar(select(func.count()).select_from(ModelVersion)) or 0)


@pytest.mark.slow
def test_first_model_reaches_the_accuracy_and_becomes_champion(trained: TrainedSystem) -> None:
    result = trained.first
    # Real pretrained features on real photos: a linear head separates them well.
    assert result.metrics["accuracy"] >= 0.93
    assert result.counts == {"dandelion": 170, "grass": 170}
    assert result.train_size + result.validation_size == 340
    assert 0.25 <= result.validation_size / 340 <= 0.35  # the 70/30 split, drawn per photo
    assert sum(map(sum, result.metrics["confusion_matrix"])) == result.validation_size
    assert result.metrics["roc_auc"] > 0.95
    history = epoch_history(result.metrics)
    assert [epoch.epoch for epoch in history] == list(range(1, 11))
    assert history[-1].train_loss < history[0].train_loss

    assert result.became_champion
    current = champion(trained.registry)
    assert current is not None and current.id == result.version_id
    with trained.registry.session() as session:
        history = session.scalars(select(ChampionHistory)).all()
        audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "promote")).all()
    assert [(h.model_version_id, h.ended_at, h.reason) for h in history] == [
        (result.version_id, None, "first model")
    ]
    assert [entry.model_version_id for entry in audit] == [result.version_id]


@pytest.mark.slow
def test_artifact_is_versioned_and_describes_its_model(trained: TrainedSystem) -> None:
    result = trained.first
    today = datetime.now(UTC).date().isoformat()
    assert result.object_key == f"model/{today}/efficientnet_lite0_classifier_1.pth"

    data = trained.store.get(result.object_key)
    version = list_versions(trained.registry)[-1]
    assert version.artifact_sha256 == hashlib.sha256(data).hexdigest()
    assert version.dataset_fingerprint == result.dataset_fingerprint
    assert version.mlflow_run_id == result.mlflow_run_id

    artifact = load_artifact(data)  # weights_only: tensors and plain values only
    backbone = get_backbone(EFFICIENTNET_LITE0, trained.settings)
    assert artifact.backbone_id == backbone.id and artifact.dim == backbone.dim == 1280
    assert artifact.preprocessing == backbone.preprocessing
    assert artifact.labels == ["dandelion", "grass"]
    assert artifact.dataset_fingerprint == result.dataset_fingerprint
    assert artifact.mlflow_run_id == result.mlflow_run_id
    assert artifact.metrics["accuracy"] == result.metrics["accuracy"]
    # The model names the network and runtime of its training embeddings.
    assert artifact.backbone_weights_sha256 == backbone.weights_sha256
    assert artifact.runtime == backbone.kind == version.params["runtime"]


@pytest.mark.slow
def test_the_version_keeps_its_per_epoch_history(trained: TrainedSystem) -> None:
    result = trained.first
    version = get_version(trained.registry, result.version_id)
    history = epoch_history(version.metrics)
    assert history == epoch_history(result.metrics)
    assert [stats.epoch for stats in history] == list(range(1, trained.settings.epochs + 1))
    for stats in history:
        values = (stats.train_loss, stats.train_accuracy, stats.val_loss, stats.val_accuracy)
        assert all(math.isfinite(value) for value in values)
        assert 0 <= stats.train_accuracy <= 1 and 0 <= stats.val_accuracy <= 1
    assert history[-1].val_loss < history[0].val_loss
    # The last epoch's head is the published head, scored on the same validation photos.
    assert history[-1].val_accuracy == result.metrics["accuracy"]
    artifact = load_artifact(trained.store.get(result.object_key))
    assert epoch_history(artifact.metrics) == history

    # The validation loss is the training loss (BCE for two labels) of the published head.
    backbone = get_backbone(EFFICIENTNET_LITE0, trained.settings)
    cache = EmbeddingCache(trained.registry, trained.store, backbone, batch_size=32)
    vectors = cache.vectors([(p.sha256, p.object_key) for p in result.validation_photos])
    grass = np.array([photo.label == "grass" for photo in result.validation_photos])
    logit = vectors @ artifact.state_dict["linear.weight"][0]
    logit += artifact.state_dict["linear.bias"][0]
    bce = np.mean(np.logaddexp(0, np.where(grass, -logit, logit)))  # -log sigmoid(±logit)
    assert history[-1].val_loss == pytest.approx(bce, rel=1e-4)


@pytest.mark.slow
def test_evaluate_version_scores_the_validation_photos_again(trained: TrainedSystem) -> None:
    metrics = evaluate_version(
        trained.settings,
        trained.registry,
        trained.store,
        trained.first.version_id,
        trained.first.validation_photos,
    )
    assert metrics["accuracy"] == pytest.approx(trained.first.metrics["accuracy"])
    assert metrics["confusion_matrix"] == trained.first.metrics["confusion_matrix"]


@pytest.mark.slow
def test_the_backbone_runs_only_on_photos_it_has_not_seen(
    embedded_home: Path, tmp_path: Path
) -> None:
    system = copy_home(embedded_home, tmp_path / "home")
    forgotten = [photo.sha256 for photo in training_set(system.registry)[:12]]
    with system.registry.session() as session:
        session.execute(delete(Embedding).where(Embedding.sha256.in_(forgotten)))
    backbone = get_backbone(EFFICIENTNET_LITE0, system.settings)

    before = backbone.images_embedded
    train_model(system.settings, system.registry, system.store)
    assert backbone.images_embedded - before == 12  # only the photos missing from the cache

    before = backbone.images_embedded
    second = train_model(system.settings, system.registry, system.store)
    assert backbone.images_embedded - before == 0  # a second training: zero backbone passes
    assert not second.became_champion
    assert second.dataset_fingerprint == dataset_fingerprint(training_set(system.registry))
    assert second.object_key.endswith("_classifier_2.pth")
    states = {v.id: v.state for v in list_versions(system.registry)}
    assert states == {1: ModelState.CHAMPION, second.version_id: ModelState.CANDIDATE}


@pytest.mark.slow
def test_training_without_promotion_leaves_an_empty_system_without_champion(
    embedded_home: Path, tmp_path: Path
) -> None:
    system = copy_home(embedded_home, tmp_path / "home")
    result = train_model(system.settings, system.registry, system.store, promote_if_first=False)
    assert not result.became_champion
    assert champion(system.registry) is None


class FailsAfterWriting(LocalStore):
    """A store whose model upload lands but whose answer is lost (a dropped connection).

    A real fault injected at the worst moment, after the bytes are in the bucket and before
    the registry row: training must remove the file and write no row.
    """

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        super().put(key, data, content_type)
        if key.startswith("model/"):
            raise StoreError(f"connection reset after writing {key}")


@pytest.mark.slow
def test_an_interrupted_training_leaves_no_model_behind(trained: TrainedSystem) -> None:
    assert isinstance(trained.store, LocalStore)
    client = MlflowClient(trained.settings.mlflow_tracking_uri)
    name = trained.settings.mlflow_model_name
    files, versions = model_files(trained.store), version_count(trained)
    mlflow_versions = len(client.search_model_versions(f"name='{name}'"))

    with pytest.raises(StoreError, match="connection reset"):
        train_model(trained.settings, trained.registry, FailsAfterWriting(trained.store.root))

    assert model_files(trained.store) == files
    assert version_count(trained) == versions
    assert len(client.search_model_versions(f"name='{name}'")) == mlflow_versions
    runs = client.search_runs(
        [client.get_experiment_by_name(trained.settings.mlflow_experiment).experiment_id],
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    assert runs[0].info.status == "FAILED"


@pytest.mark.slow
def test_a_file_left_by_a_killed_training_is_removed_by_the_next(trained: TrainedSystem) -> None:
    # What a process killed between its upload and its registry row leaves behind.
    day = datetime.now(UTC).date().isoformat()
    orphan = f"model/{day}/efficientnet_lite0_classifier_9.pth"
    trained.store.put(orphan, trained.store.get(trained.first.object_key))
    result = train_model(trained.settings, trained.registry, trained.store)
    assert not trained.store.exists(orphan)
    assert result.object_key != orphan
    assert set(model_files(trained.store)) == {
        v.object_key for v in list_versions(trained.registry)
    }


def small_system(tmp_path: Path, dataset_photos: dict[str, list[Path]]) -> System:
    """Seven dandelions and four grass photos, ingested for real."""
    source = tmp_path / "source"
    for label, count in (("dandelion", 7), ("grass", 4)):
        (source / label).mkdir(parents=True)
        for photo in dataset_photos[label][:count]:
            (source / label / photo.name).symlink_to(photo)
    system = System.open(tmp_path / "home")
    ingest(
        read_source(str(source), system.settings), system.settings, system.registry, system.store
    )
    return system


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({}, r"Too few photos to train: grass: 4; every label needs at least 5"),
        (
            {"labels": ("dandelion", "grass", "clover")},
            r"differ from the configured labels .*configured labels without photos: clover",
        ),
        (
            {"labels": ("dandelion", "daisy")},
            r"labels not in the configuration: grass; configured labels without photos: daisy",
        ),
    ],
)
def test_training_refuses_data_that_cannot_make_a_model(
    tmp_path: Path,
    dataset_photos: dict[str, list[Path]],
    overrides: dict[str, object],
    message: str,
) -> None:
    system = small_system(tmp_path, dataset_photos)
    settings = offline_settings(system.settings.home, **overrides)  # labels changed since ingest
    with pytest.raises(TrainingRefused, match=message):
        train_model(settings, system.registry, system.store)
    assert model_files(system.store) == []
    assert version_count(system) == 0


def test_split_is_stratified_seeded_and_independent_of_order() -> None:
    photos = [
        LabelledPhoto(hashlib.sha256(f"{label}{i}".encode()).hexdigest(), f"k{i}", label)
        for label, n in (("a", 40), ("b", 20))
        for i in range(n)
    ]
    train, validation = validation_split(photos, 0.3, seed=42)
    assert sorted(train + validation) == list(range(60))
    # Each label is sampled on its own, about 30% of it (a binomial draw, not an exact quota).
    assert 6 <= [photos[i].label for i in validation].count("a") <= 18
    assert 2 <= [photos[i].label for i in validation].count("b") <= 10
    # Adding photos never moves an existing photo to the other side: the holdout is fixed.
    more = [
        LabelledPhoto(hashlib.sha256(f"new{i}".encode()).hexdigest(), f"n{i}", "a")
        for i in range(30)
    ]
    _, validation_grown = validation_split(photos + more, 0.3, seed=42)
    assert {i for i in validation_grown if i < len(photos)} == set(validation)
    reordered = photos[::-1]
    _, validation_reordered = validation_split(reordered, 0.3, seed=42)
    assert {reordered[i].sha256 for i in validation_reordered} == {
        photos[i].sha256 for i in validation
    }
    _, other_seed = validation_split(photos, 0.3, seed=7)
    assert set(other_seed) != set(validation)


def test_metrics_on_known_values() -> None:
    assert roc_auc(np.array([0, 0, 1, 1], bool), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert roc_auc(np.array([0, 1], bool), np.array([0.5, 0.5])) == 0.5  # a tie counts half
    assert roc_auc(np.array([1, 1], bool), np.array([0.2, 0.3])) is None

    probabilities = np.array([[0.95, 0.05], [0.85, 0.15], [0.25, 0.75], [0.65, 0.35]])
    targets = np.array([0, 1, 1, 1])
    metrics = classification_metrics(targets, probabilities, ["a", "b"])
    assert metrics["accuracy"] == 0.5
    assert metrics["confusion_matrix"] == [[1, 0], [2, 1]]
    assert metrics["per_label"]["a"] == {
        "precision": pytest.approx(1 / 3),
        "recall": 1.0,
        "f1": pytest.approx(0.5),
        "support": 1,
    }
    assert metrics["per_label"]["b"]["recall"] == pytest.approx(1 / 3)
    # Confidences 0.95 (right), 0.85 (wrong), 0.75 (right), 0.65 (wrong): one per bin.
    assert expected_calibration_error(probabilities, targets) == pytest.approx(
        (0.05 + 0.85 + 0.25 + 0.65) / 4
    )
