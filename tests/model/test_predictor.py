"""Prediction: the CLI's lines, corrupt files, the backbone guard, hot swapping the champion."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from core.errors import ModelError, ModelLoading, NoChampion
from core.imaging import decode_stored
from core.model import predictor as predictor_module
from core.model.artifacts import ModelArtifact, load_artifact, serialize_artifact
from core.model.backbones import EFFICIENTNET_LITE0, get_backbone
from core.model.embeddings import EmbeddingCache
from core.model.head import LinearHead
from core.model.predictor import Predictor, check_compatible, load_model
from core.model.training import train_model, training_set
from core.model.versions import champion, set_champion
from core.registry import ModelState, ModelVersion
from tests.installation import System
from tests.model.conftest import TrainedSystem

REPO_ROOT = Path(__file__).resolve().parents[2]
PREDICTION_KEYS = {
    "path",
    "prediction",
    "confidence",
    "probabilities",
    "model_version",
    "backbone",
    "unsure",
    "out_of_distribution",
    "heatmap",
}


def classifi(settings_home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real entry point, in a child process, on the test's home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLASSIFI_")}
    env.update(
        CLASSIFI_HOME=str(settings_home),
        CLASSIFI_BACKBONE=EFFICIENTNET_LITE0,
        HF_HUB_OFFLINE="1",
        MLFLOW_DISABLE_TELEMETRY="true",
    )
    return subprocess.run(
        [sys.executable, "-m", "classifi", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_predict_command_json_lines_with_a_corrupt_file_among_good_ones(
    trained: TrainedSystem, dataset_photos: dict[str, list[Path]], tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    good = {
        folder / "a.jpg": "dandelion",
        folder / "nested" / "b.jpg": "grass",
        folder / "c.jpg": "grass",
    }
    sources = [
        dataset_photos["dandelion"][3],
        dataset_photos["grass"][3],
        dataset_photos["grass"][4],
    ]
    for link, source in zip(good, sources, strict=True):
        link.symlink_to(source)
    whole = dataset_photos["dandelion"][5].read_bytes()
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    (folder / "notes.png").write_text("not pixels")
    (folder / "readme.txt").write_text("not a photo name: skipped by the folder walk")

    done = classifi(trained.settings.home, "predict", str(folder), "--json", "--batch-size", "2")

    assert done.returncode == 1, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == 5
    by_path = {Path(line["path"]): line for line in lines}
    for path, label in good.items():
        line = by_path[path]
        assert set(line) == PREDICTION_KEYS
        assert line["prediction"] == label
        assert line["confidence"] == max(line["probabilities"].values())
        assert set(line["probabilities"]) == {"dandelion", "grass"}
        assert sum(line["probabilities"].values()) == pytest.approx(1.0)
        assert (line["model_version"], line["backbone"]) == (1, EFFICIENTNET_LITE0)
    for name in ("truncated.jpg", "notes.png"):
        line = by_path[folder / name]
        assert set(line) == {"path", "error"} and line["error"]
    assert "2 of 5 photos could not be classified" in done.stderr

    plain = classifi(trained.settings.home, "predict", *map(str, sources[:2]))
    assert plain.returncode == 0, plain.stderr
    first, second = plain.stdout.splitlines()
    assert "\tdandelion\t" in first and "\tgrass\t" in second and "v1 (efficientnet_lite0)" in first


@pytest.mark.slow
def test_predictions_use_the_preprocessing_of_training(trained: TrainedSystem) -> None:
    photos = trained.first.validation_photos[:12]
    images = [decode_stored(trained.store.get(photo.object_key)) for photo in photos]
    predictions = Predictor(trained.settings, trained.registry, trained.store).predict(images)

    backbone = get_backbone(EFFICIENTNET_LITE0, trained.settings)
    cached = EmbeddingCache(trained.registry, trained.store, backbone, batch_size=8).cached(
        photo.sha256 for photo in photos
    )
    artifact = load_artifact(trained.store.get(trained.first.object_key))
    assert artifact.calibration is not None
    expected = artifact.head().probabilities(
        np.stack([cached[photo.sha256] for photo in photos]), artifact.calibration.temperature
    )
    got = np.array([[p.probabilities["dandelion"], p.probabilities["grass"]] for p in predictions])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def register_artifact(
    trained: TrainedSystem, artifact: ModelArtifact, backbone_id: str
) -> ModelVersion:
    data = serialize_artifact(artifact)
    key = f"model/{datetime.now(UTC).date().isoformat()}/guard_{uuid.uuid4().hex}.pth"
    trained.store.put(key, data)
    with trained.registry.session() as session:
        row = ModelVersion(
            object_key=key,
            backbone_id=backbone_id,
            labels=artifact.labels,
            metrics={},
            params={},
            dataset_fingerprint="test",
            artifact_sha256=hashlib.sha256(data).hexdigest(),
            state=ModelState.CANDIDATE,
        )
        session.add(row)
    return row


@pytest.mark.slow
def test_a_head_is_never_used_with_another_backbone(own_trained: TrainedSystem) -> None:
    backbone = get_backbone(EFFICIENTNET_LITE0, own_trained.settings)
    genuine = load_artifact(own_trained.store.get(own_trained.first.object_key))

    def variant(**changes: object) -> ModelArtifact:
        fields = {**genuine.__dict__, **changes}
        return ModelArtifact(**fields)  # type: ignore[arg-type]

    # A DINOv2 head (384-d) whose file claims EfficientNet-Lite0.
    dinov2_sized = variant(state_dict=LinearHead(np.zeros((1, 384)), np.zeros(1), 2).state_dict())
    with pytest.raises(ModelError, match="expects 384-d embeddings"):
        load_model(
            own_trained.settings,
            own_trained.store,
            register_artifact(own_trained, dinov2_sized, EFFICIENTNET_LITE0),
        )

    # The registry and the file disagree about the backbone.
    with pytest.raises(ModelError, match="the file says backbone 'efficientnet_lite0'"):
        load_model(
            own_trained.settings,
            own_trained.store,
            register_artifact(own_trained, genuine, "dinov2_vits14"),
        )

    with pytest.raises(ModelError, match="trained on backbone 'dinov2_vits14'"):
        check_compatible(variant(backbone_id="dinov2_vits14"), backbone, source="The head")
    with pytest.raises(ModelError, match="another preprocessing"):
        check_compatible(
            variant(preprocessing={**genuine.preprocessing, "size": 256}),
            backbone,
            source="The head",
        )

    # A file changed after it was registered.
    tampered = register_artifact(own_trained, genuine, EFFICIENTNET_LITE0)
    own_trained.store.put(
        tampered.object_key, serialize_artifact(variant(labels=["grass", "dandelion"]))
    )
    with pytest.raises(ModelError, match="does not match the checksum"):
        load_model(own_trained.settings, own_trained.store, tampered)


@pytest.mark.slow
def test_hot_swap_to_a_new_champion_during_concurrent_predictions(
    own_trained: TrainedSystem,
) -> None:
    settings, registry, store = own_trained.settings, own_trained.registry, own_trained.store
    old = champion(registry)
    assert old is not None
    # A visibly different model: fewer epochs on part of the photos.
    photos = training_set(registry)[::2]
    new = train_model(settings.model_copy(update={"epochs": 3}), registry, store, photos=photos)
    images = [decode_stored(store.get(photo.object_key)) for photo in photos[:4]]

    predictor = Predictor(settings, registry, store, refresh_interval=0)
    assert predictor.info.version == old.id
    warmed_up = threading.Semaphore(0)
    seen: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def client(number: int) -> None:
        versions = seen.setdefault(number, [])
        try:
            for _ in range(1000):  # bound: the swap is expected within a few rounds
                predictor.refresh()
                batch = predictor.predict(images, batch_size=2)
                assert len({p.model_version for p in batch}) == 1  # one model per call
                versions.append(batch[0].model_version)
                if len(versions) == 2:
                    warmed_up.release()
                if versions[-3:] == [new.version_id] * 3:
                    return
        except BaseException as exc:
            errors.append(exc)
            warmed_up.release()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for _ in threads:
        warmed_up.acquire()  # every client has predicted with the old champion
    set_champion(settings, registry, new.version_id, actor="tester", reason="hot swap test")
    for thread in threads:
        thread.join()

    assert errors == []
    for versions in seen.values():
        assert versions[:2] == [old.id, old.id]
        switch = versions.index(new.version_id)
        assert set(versions[:switch]) == {old.id}
        assert set(versions[switch:]) == {new.version_id}  # never back to the old model
    predictor.wait_for_swap()
    assert predictor.info.version == new.version_id


@pytest.mark.slow
def test_refresh_is_throttled_between_registry_checks(own_trained: TrainedSystem) -> None:
    current = champion(own_trained.registry)
    assert current is not None
    predictor = Predictor(
        own_trained.settings, own_trained.registry, own_trained.store, refresh_interval=3600
    )
    assert predictor.info.version == current.id
    other = train_model(own_trained.settings, own_trained.registry, own_trained.store)
    set_champion(
        own_trained.settings, own_trained.registry, other.version_id, actor="tester", reason="test"
    )

    assert predictor.refresh() is False  # checked moments ago: no registry query yet
    assert predictor.info.version == current.id
    assert predictor.refresh(force=True) is True
    predictor.wait_for_swap()
    assert predictor.info.version == other.version_id


@pytest.mark.slow
def test_a_swap_loads_in_the_background_while_the_old_model_answers(
    own_trained: TrainedSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new champion's load is held on an event (the real load runs once released): every
    call meanwhile returns at once, answered by the old model."""
    settings, registry, store = own_trained.settings, own_trained.registry, own_trained.store
    current = champion(registry)
    assert current is not None
    predictor = Predictor(settings, registry, store, refresh_interval=0)
    assert predictor.info.version == current.id
    other = train_model(settings, registry, store, promote_if_first=False)
    set_champion(settings, registry, other.version_id, actor="tester", reason="test")

    release, loading = threading.Event(), threading.Event()
    real_load = predictor_module.load_model

    def held_load(*args: Any, **kwargs: Any) -> Any:
        loading.set()
        assert release.wait(60)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(predictor_module, "load_model", held_load)
    image = decode_stored(store.get(training_set(registry)[0].object_key))
    assert predictor.refresh() is True
    assert loading.wait(60)
    assert predictor.refresh() is False  # one load at a time
    assert predictor.predict([image], wait=False)[0].model_version == current.id
    assert predictor.current().info.version == current.id
    release.set()
    predictor.wait_for_swap(60)
    assert predictor.predict([image], wait=False)[0].model_version == other.version_id


@pytest.mark.slow
def test_a_first_load_in_the_background_answers_model_loading(
    trained: TrainedSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    predictor = Predictor(trained.settings, trained.registry, trained.store, refresh_interval=0)
    release = threading.Event()
    real_load = predictor_module.load_model

    def held_load(*args: Any, **kwargs: Any) -> Any:
        assert release.wait(60)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(predictor_module, "load_model", held_load)
    with pytest.raises(ModelLoading, match="loading"):
        predictor.current()  # starts the load and says so, without waiting
    release.set()
    predictor.wait_for_swap(60)
    current = champion(trained.registry)
    assert current is not None and predictor.current().info.version == current.id


def test_no_champion_says_how_to_get_one(tmp_path: Path) -> None:
    system = System.open(tmp_path / "home")
    predictor = Predictor(system.settings, system.registry, system.store)
    with pytest.raises(NoChampion, match=r"No model yet: run `classifi train`"):
        predictor.predict([Image.new("RGB", (64, 64))])
