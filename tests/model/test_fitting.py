"""The numpy trainer against torch's: the same training on the same embeddings gives the same
weights (to float32 rounding) and the same validation accuracy; a process without torch or
MLflow (the desktop bundle) trains and saves the same model."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.model.artifacts import load_artifact
from core.model.backbones import EFFICIENTNET_LITE0, get_backbone
from core.model.embeddings import EmbeddingCache
from core.model.fitting import NUMPY, TORCH, batches, fit_head
from core.model.pth import load_pth, save_pth
from core.model.training import training_set, validation_split
from core.model.versions import get_version
from tests.installation import System
from tests.model.conftest import copy_home

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shared_embeddings(embedded_home: Path) -> tuple[np.ndarray, list[str], list[str]]:
    """The 340 shared photos' cached embeddings, their labels and sha256s."""
    system = System.open(embedded_home)
    photos = training_set(system.registry)
    backbone = get_backbone(EFFICIENTNET_LITE0, system.settings)
    cache = EmbeddingCache(system.registry, system.store, backbone, batch_size=32)
    vectors = cache.vectors([(photo.sha256, photo.object_key) for photo in photos])
    system.registry.dispose()
    return vectors, [photo.label for photo in photos], [photo.sha256 for photo in photos]


def train_both(vectors: np.ndarray, targets: np.ndarray, n_labels: int, photos: list) -> dict:
    train, validation = validation_split(photos, 0.3, 42)
    trained = {}
    for trainer in (NUMPY, TORCH):
        trained[trainer] = fit_head(
            vectors[train],
            targets[train],
            n_labels,
            validation=(vectors[validation], targets[validation]),
            learning_rate=0.003,
            epochs=10,
            batch_size=32,
            seed=42,
            trainer=trainer,
        )
    return trained


def assert_same_training(trained: dict) -> None:
    (numpy_head, numpy_history), (torch_head, torch_history) = trained[NUMPY], trained[TORCH]
    assert np.abs(torch_head.weight).max() > 0.01  # the heads learnt something
    np.testing.assert_allclose(numpy_head.weight, torch_head.weight, rtol=0, atol=1e-6)
    np.testing.assert_allclose(numpy_head.bias, torch_head.bias, rtol=0, atol=1e-6)
    assert [s.val_accuracy for s in numpy_history] == [s.val_accuracy for s in torch_history]
    assert [s.train_accuracy for s in numpy_history] == [s.train_accuracy for s in torch_history]
    for ours, theirs in zip(numpy_history, torch_history, strict=True):
        assert ours.train_loss == pytest.approx(theirs.train_loss, rel=1e-5)
        assert ours.val_loss == pytest.approx(theirs.val_loss, rel=1e-5)


class Photo:
    def __init__(self, sha256: str, label: str) -> None:
        self.sha256, self.label = sha256, label


def test_two_labels_train_alike(shared_embeddings) -> None:
    vectors, labels, hashes = shared_embeddings
    names = sorted(set(labels))
    targets = np.array([names.index(label) for label in labels])
    photos = [Photo(sha, label) for sha, label in zip(hashes, labels, strict=True)]
    trained = train_both(vectors, targets, 2, photos)
    assert_same_training(trained)
    assert trained[NUMPY][1][-1].val_accuracy > 0.9


def test_three_labels_train_alike(shared_embeddings) -> None:
    # A third label: the grass photos whose hash starts with a low digit (cross-entropy).
    vectors, labels, hashes = shared_embeddings
    three = [
        "short_grass" if label == "grass" and sha[0] in "01234567" else label
        for label, sha in zip(labels, hashes, strict=True)
    ]
    names = sorted(set(three))
    targets = np.array([names.index(label) for label in three])
    photos = [Photo(sha, label) for sha, label in zip(hashes, three, strict=True)]
    assert_same_training(train_both(vectors, targets, 3, photos))


def test_the_batches_are_a_seeded_permutation() -> None:
    first = list(batches(70, 32, np.random.default_rng(7)))
    again = list(batches(70, 32, np.random.default_rng(7)))
    assert [len(batch) for batch in first] == [32, 32, 6]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert sorted(np.concatenate(first)) == list(range(70))


# A process as the desktop bundle is: torch, its libraries and MLflow cannot be imported.
WITHOUT_TORCH = """
import sys

class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "torchvision", "timm", "mlflow", "onnx"}:
            raise ImportError(f"{name} is not installed in the bundle")
        return None

sys.meta_path.insert(0, Absent())
from pathlib import Path
from core.model.training import train_model
from tests.installation import System

system = System.open(Path(sys.argv[1]))
result = train_model(system.settings, system.registry, system.store, promote_if_first=False)
assert "torch" not in sys.modules and "mlflow" not in sys.modules, "imported anyway"
print(result.version_id)
"""


def test_a_process_without_torch_trains_the_same_model(trained, tmp_path: Path) -> None:
    system = copy_home(trained.settings.home, tmp_path / "home")
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, str(system.settings.home)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    version = get_version(system.registry, int(done.stdout.split()[-1]))
    reference = get_version(system.registry, trained.first.version_id)  # trained with torch
    assert (version.params["trainer"], reference.params["trainer"]) == (NUMPY, TORCH)
    assert version.mlflow_run_id is None and version.mlflow_version is None
    assert version.metrics["accuracy"] == reference.metrics["accuracy"]
    assert version.metrics["confusion_matrix"] == reference.metrics["confusion_matrix"]
    ours = load_artifact(system.store.get(version.object_key)).state_dict
    theirs = load_artifact(system.store.get(reference.object_key)).state_dict
    for name in theirs:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=0, atol=1e-6)
    # What the torch-free writer wrote, torch reads (as weights_only allows) to the same values.
    loaded = torch.load(io.BytesIO(system.store.get(version.object_key)), weights_only=True)
    for name, array in ours.items():
        np.testing.assert_array_equal(loaded["state_dict"][name].numpy(), array)
    assert loaded["labels"] == reference.labels
    system.registry.dispose()


def test_the_writer_writes_what_torch_load_reads() -> None:
    grid = np.arange(24, dtype=np.float32).reshape(4, 6)
    value = {
        "state_dict": {"weight": np.ones((1, 3), np.float32), "strided": grid.T[1:, ::2]},
        "ints": np.arange(5, dtype=np.int64),
        "flags": np.array([True, False]),
        "half": np.ones(3, dtype=np.float16),
        "scalar": np.array(3.5),
        "empty": np.zeros((0, 4), np.float32),
        "labels": ["dandelion", "grass"],
        "metrics": {"accuracy": 0.97, "none": None, "nested": [1, 2.5, "x"]},
    }
    data = save_pth(value)
    loaded = torch.load(io.BytesIO(data), weights_only=True)
    again = load_pth(data)
    for read in (
        {name: tensor.numpy() for name, tensor in loaded["state_dict"].items()},
        again["state_dict"],
    ):
        for name, array in value["state_dict"].items():  # type: ignore[attr-defined]
            assert read[name].dtype == array.dtype
            np.testing.assert_array_equal(read[name], array)
    for name in ("ints", "flags", "half", "scalar", "empty"):
        expected = value[name]
        for read_value in (loaded[name].numpy(), again[name]):
            assert read_value.dtype == expected.dtype and read_value.shape == expected.shape
            np.testing.assert_array_equal(read_value, expected)
    assert loaded["labels"] == again["labels"] == value["labels"]
    assert loaded["metrics"] == again["metrics"] == value["metrics"]
