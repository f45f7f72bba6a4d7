"""The desktop launcher classifies without a window (``--classify``), from the sources and from
the PyInstaller bundle: the answers are the champion's own predictions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.app import App
from core.config import Settings

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "dist" / "classifi-desktop" / "classifi-desktop"
SOURCES = [ROOT / "packaging" / "classifi_desktop.spec", ROOT / "pyproject.toml"] + [
    path for package in ("core", "desktop", "classifi") for path in (ROOT / package).rglob("*.py")
]


def run_launcher(command: list[str], home: Path, photos: list[Path]) -> subprocess.CompletedProcess:
    """Run the launcher offscreen to classify ``photos`` as JSON."""
    # Only --home decides where the data is: CLASSIFI_* variables of the caller are left out.
    environ = {key: value for key, value in os.environ.items() if not key.startswith("CLASSIFI_")}
    environ["QT_QPA_PLATFORM"] = "offscreen"
    return subprocess.run(
        [*command, "--home", str(home), "--classify", *map(str, photos), "--json"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
    )


def launch(command: list[str], settings: Settings, photos: list[Path]) -> tuple[int, list[dict]]:
    """The launcher's exit code and its JSON results."""
    answer = run_launcher(command, settings.home, photos)
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
    code, results = launch(command, trained_settings, photos_and_a_broken_one)
    assert code == 1  # one photo could not be classified
    assert [Path(result["path"]) for result in results] == photos_and_a_broken_one
    check_results(trained_settings, results, photos_and_a_broken_one[:2])
    assert "truncated" in results[2]["error"] and results[2]["label"] is None


def test_no_champion_is_a_clear_error(settings, unseen_photos) -> None:
    command = [sys.executable, "-m", "desktop"]
    answer = run_launcher(command, settings.home, [unseen_photos["grass"][0]])
    assert answer.returncode == 1
    assert "No model yet" in answer.stderr and not answer.stdout


def bundle_is_stale() -> bool:
    if not BUNDLE.exists():
        return True
    built = BUNDLE.stat().st_mtime
    return any(path.stat().st_mtime > built for path in SOURCES)


@pytest.mark.slow
@pytest.mark.timeout(3600)  # building the bundle takes many minutes on 2 cores
def test_the_bundle_classifies_a_photo(trained_settings, unseen_photos) -> None:
    if bundle_is_stale():
        subprocess.run([str(ROOT / "scripts" / "build_desktop.sh")], check=True, timeout=3500)
    photos = [unseen_photos["dandelion"][1], unseen_photos["grass"][1]]
    code, results = launch([str(BUNDLE)], trained_settings, photos)
    assert code == 0
    check_results(trained_settings, results, photos)
    assert {result["label"] for result in results} == {"dandelion", "grass"}
