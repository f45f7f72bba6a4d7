"""Prediction never needs torch: a child process that cannot import it classifies through
core.app.App and `classifi predict`, from the exported files in the home or shipped beside."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from core.app import App
from core.model.runtimes.files import EXPORT_COMMAND
from tests.edge.conftest import start_server
from tests.model.conftest import TrainedSystem

Run = Callable[..., subprocess.CompletedProcess[str]]

CLASSIFY = """
from core.app import App
from core.config import load_settings
settings = load_settings({}, overrides=ARGS["settings"])
with App(settings, actor="test") as app:
    outcomes = app.classify([open(path, "rb").read() for path in ARGS["photos"]])
    model = app.predictor.ensure_loaded()
    print(json.dumps({
        "predictions": [outcome.to_dict() for outcome in outcomes],
        "runtime": model.backbone.kind,
        "torch": "torch" in sys.modules,
    }))
"""


def photos_of(dataset_photos: dict[str, list[Path]]) -> list[str]:
    return [str(dataset_photos["dandelion"][7]), str(dataset_photos["grass"][7])]


def in_process(trained: TrainedSystem, photos: list[str]) -> list[dict[str, object]]:
    with App(trained.settings, actor="test") as app:
        return [p.to_dict() for p in app.classify([Path(path).read_bytes() for path in photos])]  # type: ignore[union-attr]


def assert_same_predictions(got: list[dict], expected: list[dict]) -> None:  # type: ignore[type-arg]
    assert [p["prediction"] for p in got] == [p["prediction"] for p in expected]
    for ours, theirs in zip(got, expected, strict=True):
        for label, probability in theirs["probabilities"].items():
            assert ours["probabilities"][label] == pytest.approx(probability, abs=1e-4)


def test_torch_cannot_be_imported_in_the_child(run_torchless: Run) -> None:
    done = run_torchless("import torch")
    assert done.returncode != 0 and "blocked by the test" in done.stderr


@pytest.mark.slow
def test_the_app_classifies_without_torch(
    trained: TrainedSystem, run_torchless: Run, dataset_photos: dict[str, list[Path]]
) -> None:
    photos = photos_of(dataset_photos)
    done = run_torchless(
        CLASSIFY, {"settings": {"home": str(trained.settings.home)}, "photos": photos}
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["torch"] is False
    assert result["runtime"].split("/")[0] in ("onnxruntime", "openvino")
    assert_same_predictions(result["predictions"], in_process(trained, photos))
    assert [p["prediction"] for p in result["predictions"]] == ["dandelion", "grass"]


@pytest.mark.slow
def test_classifi_predict_runs_without_torch(
    trained: TrainedSystem, torchless_env: dict[str, str], dataset_photos: dict[str, list[Path]]
) -> None:
    photos = photos_of(dataset_photos)
    done = subprocess.run(
        [sys.executable, "-m", "classifi", "--home", str(trained.settings.home), "predict",
         *photos, "--json"],
        env=torchless_env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert_same_predictions(lines, in_process(trained, photos))


@pytest.mark.slow
def test_a_missing_export_without_torch_names_the_command(
    trained: TrainedSystem,
    run_torchless: Run,
    dataset_photos: dict[str, list[Path]],
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    shutil.copytree(trained.settings.home, home, ignore=shutil.ignore_patterns("runtimes"))
    done = run_torchless(
        CLASSIFY, {"settings": {"home": str(home)}, "photos": photos_of(dataset_photos)}
    )
    assert done.returncode != 0
    assert "torch, which makes it, is not installed here" in done.stderr
    assert EXPORT_COMMAND in done.stderr and "runtime_search_path" in done.stderr


@pytest.mark.slow
def test_shipped_files_on_the_search_path_serve_a_home_without_them(
    trained: TrainedSystem,
    run_torchless: Run,
    dataset_photos: dict[str, list[Path]],
    tmp_path: Path,
) -> None:
    shipped = tmp_path / "image" / "runtimes"
    with App(trained.settings, actor="test") as app:
        export = app.export_runtimes(out=shipped)
    assert sorted(p.name for p in shipped.iterdir()) == sorted(
        f"{export.stem}{suffix}" for suffix in (".onnx", ".probe.npz", ".json")
    )
    home = tmp_path / "home"
    shutil.copytree(trained.settings.home, home, ignore=shutil.ignore_patterns("runtimes"))
    photos = photos_of(dataset_photos)
    settings = {"home": str(home), "runtime_search_path": [str(shipped)]}
    done = run_torchless(CLASSIFY, {"settings": settings, "photos": photos})
    assert done.returncode == 0, done.stderr
    assert_same_predictions(json.loads(done.stdout)["predictions"], in_process(trained, photos))
    # The shipped folder is only read; what this machine measured went to the home.
    assert sorted(p.name for p in shipped.iterdir()) == sorted(
        f"{export.stem}{suffix}" for suffix in (".onnx", ".probe.npz", ".json")
    )
    assert (home / "runtimes" / f"{export.stem}.auto.selection.json").is_file()


@pytest.mark.slow
def test_a_live_classifi_serve_answers_without_torch(
    trained: TrainedSystem,
    torchless_env: dict[str, str],
    dataset_photos: dict[str, list[Path]],
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    shutil.copytree(trained.settings.home, home)
    photos = photos_of(dataset_photos)
    server = start_server(home, "--workers", "2", env={"PYTHONPATH": torchless_env["PYTHONPATH"]})
    try:
        answers = []
        for path in photos:
            with open(path, "rb") as photo:
                response = requests.post(f"{server.url}/predict", files={"file": photo}, timeout=60)
            assert response.status_code == 200, response.text
            answers.append(response.json())
    finally:
        server.stop()
    assert_same_predictions(answers, in_process(trained, photos))
    assert "blocked by the test" not in server.log.read_text()  # no worker even tried torch
