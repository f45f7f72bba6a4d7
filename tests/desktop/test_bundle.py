"""The desktop launcher without a window, from the sources and from the PyInstaller bundle:
``--classify`` prints the champion's own predictions; the bundle, which has no torch, no CUDA
and no MLflow, classifies on a fresh data folder with the model it ships, trains a model from a
labelled folder (``--import``, a Get started without a window) and works in remote mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.app import App
from core.config import Settings, load_settings
from core.model.versions import get_version
from core.wire import ModelState
from tests.edge.conftest import LiveServer, copy_home, start_server

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "dist" / "classifi-desktop" / "classifi-desktop"
SIZE_LIMIT_MB = 350
SOURCES = [
    ROOT / "packaging" / "classifi_desktop.spec",
    ROOT / "pyproject.toml",
    ROOT / "scripts" / "build_desktop.sh",
] + [
    path
    for package in ("core", "desktop", "classifi", "worker")
    for path in (ROOT / package).rglob("*.py")
]


def run_launcher(command: list[str], home: Path, *arguments: str) -> subprocess.CompletedProcess:
    """Run the launcher offscreen on ``home`` with ``arguments``."""
    # Only --home decides where the data is: CLASSIFI_* variables of the caller are left out,
    # and so is PYTHONPATH (the bundle must need nothing from the sources).
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CLASSIFI_") and (key != "PYTHONPATH" or command[0] != str(BUNDLE))
    }
    environ["QT_QPA_PLATFORM"] = "offscreen"
    return subprocess.run(
        [*command, "--home", str(home), *arguments],
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
    )


def classify(command: list[str], home: Path, photos: list[Path], *mode: str) -> tuple[int, list]:
    """The launcher's exit code and its JSON results for ``photos``."""
    answer = run_launcher(command, home, *mode, "--classify", *map(str, photos), "--json")
    assert answer.stdout, answer.stderr
    return answer.returncode, json.loads(answer.stdout)


def check_results(settings: Settings, results: list[dict], photos: list[Path]) -> None:
    """Each photo's result is what the champion predicts for it in this process."""
    with App(settings, actor="tests") as app:
        expected = app.classify([photo.read_bytes() for photo in photos])
    by_path = {Path(result["path"]): result for result in results}
    for photo, prediction in zip(photos, expected, strict=True):
        result = by_path[photo]
        assert result["error"] is None
        assert result["label"] == prediction.label
        assert result["confidence"] == pytest.approx(prediction.confidence, abs=1e-5)
        assert result["model_version"] == prediction.model_version == 1


@pytest.fixture
def photos_and_a_broken_one(unseen_photos: dict[str, list[Path]], tmp_path: Path) -> list[Path]:
    good = [unseen_photos["dandelion"][0], unseen_photos["grass"][0]]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(good[0].read_bytes()[:2000])
    return [*good, broken]


def test_classify_from_the_sources(trained_settings, photos_and_a_broken_one) -> None:
    command = [sys.executable, "-m", "desktop"]
    code, results = classify(command, trained_settings.home, photos_and_a_broken_one)
    assert code == 1  # one photo could not be classified
    assert [Path(result["path"]) for result in results] == photos_and_a_broken_one
    check_results(trained_settings, results, photos_and_a_broken_one[:2])
    assert "truncated" in results[2]["error"] and results[2]["label"] is None


def test_no_champion_is_a_clear_error(settings, unseen_photos) -> None:
    command = [sys.executable, "-m", "desktop"]
    answer = run_launcher(command, settings.home, "--classify", str(unseen_photos["grass"][0]))
    assert answer.returncode == 1
    assert "No model yet" in answer.stderr and not answer.stdout


def bundle_is_stale() -> bool:
    if not BUNDLE.exists():
        return True
    built = BUNDLE.stat().st_mtime
    return any(path.stat().st_mtime > built for path in SOURCES)


@pytest.fixture(scope="module")
def bundle() -> Path:
    """The bundle, built by scripts/build_desktop.sh when the sources are newer."""
    if bundle_is_stale():
        subprocess.run([str(ROOT / "scripts" / "build_desktop.sh")], check=True, timeout=3500)
    return BUNDLE


def folder_size_mb(folder: Path) -> float:
    return sum(path.lstat().st_size for path in folder.rglob("*")) / 1e6


@pytest.mark.slow
@pytest.mark.timeout(3600)  # building the bundle takes minutes on 2 cores
def test_the_bundle_is_lean(bundle: Path) -> None:
    internal = bundle.parent / "_internal"
    assert folder_size_mb(bundle.parent) < SIZE_LIMIT_MB
    names = {path.name for path in internal.iterdir()}
    assert not names & {"torch", "torchvision", "nvidia", "mlflow", "openvino", "triton"}
    assert not list(internal.rglob("libcuda*")) and not list(internal.rglob("libtorch*"))
    shipped = internal / "resources"
    assert list((shipped / "runtimes").glob("efficientnet_lite0-*.onnx"))
    assert list((shipped / "default-model").glob("efficientnet_lite0_classifier_*.pth"))


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_a_fresh_install_classifies_with_the_shipped_model(
    bundle: Path, tmp_path: Path, dataset_photos
) -> None:
    photos = [*dataset_photos["dandelion"][-2:], *dataset_photos["grass"][-2:]]
    code, results = classify([str(bundle)], tmp_path / "fresh", photos)
    assert code == 0, results
    assert [result["label"] for result in results] == ["dandelion"] * 2 + ["grass"] * 2
    assert {result["model_version"] for result in results} == {1}
    # The runtime was chosen among those the bundle carries: ONNX Runtime only (an OpenVINO
    # without its CPU plugin once failed the choice).
    (choice,) = (tmp_path / "fresh" / "runtimes").glob("*.selection.json")
    candidates = json.loads(choice.read_text())["candidates"]
    assert {candidate["runtime"] for candidate in candidates} == {"onnxruntime"}
    assert all(candidate["error"] is None for candidate in candidates)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_the_bundle_classifies_as_the_champion_does(
    bundle: Path, trained_settings, unseen_photos
) -> None:
    photos = [unseen_photos["dandelion"][1], unseen_photos["grass"][1]]
    code, results = classify([str(bundle)], trained_settings.home, photos)
    assert code == 0
    check_results(trained_settings, results, photos)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_get_started_trains_a_model_inside_the_bundle(
    bundle: Path, tmp_path: Path, dataset_photos
) -> None:
    # Labels of one's own: the shipped champion knows others, so the new model waits for
    # the admin (who promotes it in the app).
    folder = tmp_path / "garden"
    for label, source in (("flower", "dandelion"), ("lawn", "grass")):
        (folder / label).mkdir(parents=True)
        for photo in dataset_photos[source][:12]:
            (folder / label / photo.name).symlink_to(photo)
    home = tmp_path / "fresh"
    answer = run_launcher([str(bundle)], home, "--import", str(folder))
    assert answer.returncode == 0, answer.stderr
    report = json.loads(answer.stdout)
    assert report["preview"]["new_photos"] == {"flower": 12, "lawn": 12}
    outcome = report["outcome"]
    assert outcome["labels"] == ["flower", "lawn"] and outcome["photos"]["added"] == 24
    assert outcome["state"] == ModelState.CANDIDATE and outcome["version"] == 2
    assert "admin promotes" in outcome["gate"]["reason"]
    assert tomllib.loads((home / "config.toml").read_text())["labels"] == ["flower", "lawn"]
    settings = load_settings({}, overrides={"home": home})
    with App(settings, actor="tests") as app:
        # Trained in the bundle by the numpy trainer, recorded in the registry (no MLflow).
        version = get_version(app.registry, 2)
        assert version.labels == ["flower", "lawn"]
        assert version.params["trainer"] == "numpy" and version.mlflow_run_id is None
        assert app.doctor().clean


@pytest.fixture
def remote_server(trained_home: Path, tmp_path: Path) -> Iterator[LiveServer]:
    live = start_server(copy_home(trained_home, tmp_path / "server"))
    yield live
    live.stop()


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_the_bundle_classifies_on_an_edge_server(
    bundle: Path, remote_server: LiveServer, tmp_path: Path, unseen_photos
) -> None:
    photos = [unseen_photos["dandelion"][2], unseen_photos["grass"][2]]
    code, results = classify(
        [str(bundle)], tmp_path / "desktop", photos, "--remote", remote_server.url
    )
    assert code == 0, results
    server_settings = load_settings({}, overrides={"home": remote_server.home})
    check_results(server_settings, results, photos)
