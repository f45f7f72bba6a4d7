"""Get started in local mode, against real components: label folders dropped on the window,
what was found shown before anything is stored, the import and the first training in a child
process with real progress, the result page; folders that cannot give a model refused before
anything is stored; Cancel leaves nothing half-made (doctor is clean); a label added later
trains a model that the admin promotes; photos added to a known label."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from core.app import App
from core.config import load_settings
from core.errors import Cancelled
from core.wire import ModelState
from desktop.get_started import GetStartedWindow, open_get_started
from desktop.main_window import MainWindow
from tests.desktop.conftest import drop

pytestmark = [pytest.mark.gui, pytest.mark.slow]

PER_LABEL = 24  # photos per label of the folders imported here


def label_folders(root: Path, photos: dict[str, list[Path]], count: int = PER_LABEL) -> Path:
    """``root/<label>/`` with ``count`` shared photos each (linked, not copied)."""
    for label, paths in photos.items():
        (root / label).mkdir(parents=True)
        for photo in paths[:count]:
            (root / label / photo.name).symlink_to(photo)
    return root


def preview_of(qtbot, window: MainWindow, paths: list[Path]) -> GetStartedWindow:
    """Drop ``paths`` on the main window's "no model" page; the Get started window checks them."""
    drop(window, paths)
    get_started = window.get_started_window
    assert get_started is not None and get_started.isVisible()
    qtbot.waitUntil(lambda: get_started.preview is not None, timeout=120_000)
    return get_started


def import_and_wait(qtbot, get_started: GetStartedWindow) -> dict:
    outcomes: list = []
    get_started.finished.connect(outcomes.append)
    get_started.failed.connect(outcomes.append)
    get_started.preview_page.import_button.click()
    assert get_started.pages.currentWidget() is get_started.progress_page
    qtbot.waitUntil(lambda: bool(outcomes), timeout=300_000)
    assert isinstance(outcomes[0], dict), outcomes[0]
    return outcomes[0]


def test_get_started_from_dropped_label_folders(
    open_window, settings, qtbot, tmp_path, dataset_photos
) -> None:
    source = label_folders(tmp_path / "photos", dataset_photos)
    good = dataset_photos["grass"][-1].read_bytes()
    (source / "grass" / "broken.jpg").write_bytes(good[: len(good) // 3])
    (source / "dandelion" / "notes.txt").write_text("not a photo")
    window = open_window(settings)
    assert window.pages.currentWidget() is window.no_model_page

    get_started = preview_of(qtbot, window, [source / "dandelion", source / "grass"])
    preview = get_started.preview
    assert preview.ok and preview.labels_after == ["dandelion", "grass"]
    assert preview.new_photos == {"dandelion": PER_LABEL, "grass": PER_LABEL}
    assert {Path(item.source).name: item.reason for item in preview.skipped} == {
        "broken.jpg": "corrupt",
        "notes.txt": "unsupported_type",
    }
    page = get_started.preview_page
    assert page.counts.rowCount() == 2 and page.counts.item(0, 1).text() == str(PER_LABEL)
    assert page.skipped.rowCount() == 2 and page.import_button.isEnabled()
    with App(settings, actor="tests") as app:
        assert app.home_labels() == []  # the preview stored nothing

    curves: list = []
    bars = get_started.progress_page.bars
    outcome_holder: list = []
    get_started.finished.connect(outcome_holder.append)
    get_started.preview_page.import_button.click()
    job = get_started.job
    assert job is not None and job.pid not in (None, os.getpid())  # a child process trains
    job.epoch.connect(lambda _stats: curves.append(len(get_started.progress_page.history)))
    qtbot.waitUntil(lambda: bool(outcome_holder), timeout=300_000)
    outcome = outcome_holder[0]

    assert (bars["store"].value(), bars["store"].maximum()) == (2 * PER_LABEL, 2 * PER_LABEL)
    assert bars["embed"].value() == bars["embed"].maximum() == 2 * PER_LABEL
    assert bars["train"].value() == bars["train"].maximum() == settings.epochs
    assert curves == list(range(1, settings.epochs + 1))  # drawn epoch by epoch
    series = get_started.progress_page.curves.chart().series()
    assert [len(s.points()) for s in series] == [settings.epochs] * 4

    assert outcome["state"] == ModelState.CHAMPION and outcome["version"] == 1
    result = get_started.result_page
    assert get_started.pages.currentWidget() is result
    assert f"{outcome['metrics']['accuracy']:.1%}" in result.summary.text()
    assert result.confusion.matrix == outcome["metrics"]["confusion_matrix"]
    assert "champion" in result.decision.text() and not result.promote_button.isVisibleTo(result)
    qtbot.waitUntil(lambda: window.model_label.text().startswith("Model v1"))
    assert window.pages.currentWidget() is window.drop_page  # ready to classify
    with App(settings, actor="tests") as app:
        assert app.doctor().clean and app.lock_holder() is None


def test_folders_that_cannot_give_a_model_are_refused_before_anything_is_stored(
    open_window, settings, qtbot, tmp_path, dataset_photos
) -> None:
    window = open_window(settings)
    single = label_folders(tmp_path / "single", {"grass": dataset_photos["grass"]}, 8)
    get_started = preview_of(qtbot, window, [single])
    assert not get_started.preview.ok
    assert "Only one label (grass)" in get_started.preview_page.problems.text()
    assert not get_started.preview_page.import_button.isEnabled()

    few = label_folders(tmp_path / "few", dataset_photos, 8)
    for photo in sorted((few / "grass").iterdir())[3:]:
        photo.unlink()
    get_started.preview_paths([few])
    qtbot.waitUntil(lambda: get_started.preview is not None, timeout=60_000)
    problems = get_started.preview_page.problems.text()
    assert "Too few photos: grass has 3" in problems and "at least 5" in problems
    assert not get_started.preview_page.import_button.isEnabled()

    bad_name = label_folders(tmp_path / "names", {"red clover": dataset_photos["grass"]}, 6)
    label_folders(bad_name, {"dandelion": dataset_photos["dandelion"]}, 6)
    get_started.preview_paths([bad_name])
    qtbot.waitUntil(lambda: get_started.preview is not None, timeout=60_000)
    assert "'red clover' cannot be a label" in get_started.preview_page.problems.text()
    assert "red_clover" in get_started.preview_page.problems.text()  # the fix

    with App(settings, actor="tests") as app:
        assert app.home_labels() == [] and not app.versions()
        assert not list(app.store.list("raw/"))


def test_cancel_while_storing_removes_the_photos(
    open_window, settings, qtbot, tmp_path, dataset_photos
) -> None:
    source = label_folders(tmp_path / "photos", dataset_photos, 170)
    window = open_window(settings)
    get_started = preview_of(qtbot, window, [source])
    failures: list = []
    get_started.failed.connect(failures.append)
    get_started.preview_page.import_button.click()
    job = get_started.job
    job.progress.connect(lambda stage, done, _total: stage == "store" and done > 0 and job.cancel())
    qtbot.waitUntil(lambda: bool(failures), timeout=300_000)
    assert isinstance(failures[0], Cancelled)
    assert get_started.result_page.title.text() == "Import cancelled"
    with App(settings, actor="tests") as app:
        assert app.home_labels() == [] and not app.versions()  # nothing half-imported
        assert not list(app.store.list("raw/"))
        assert app.doctor().clean and app.lock_holder() is None


def test_cancel_mid_training_keeps_the_photos_and_makes_no_model(
    open_window, settings, qtbot, tmp_path, dataset_photos
) -> None:
    source = label_folders(tmp_path / "photos", dataset_photos, 170)
    window = open_window(settings)
    get_started = preview_of(qtbot, window, [source])
    failures: list = []
    get_started.failed.connect(failures.append)
    get_started.preview_page.import_button.click()
    job = get_started.job
    job.progress.connect(lambda stage, _done, _total: stage == "embed" and job.cancel())
    qtbot.waitUntil(lambda: bool(failures), timeout=300_000)
    assert isinstance(failures[0], Cancelled)
    assert get_started.progress_page.bars["train"].value() < settings.epochs
    with App(settings, actor="tests") as app:
        assert not app.versions() and not list(app.store.list("model/"))
        assert app.home_labels() == ["dandelion", "grass"]  # the photos were all stored
        assert app.doctor().clean and app.lock_holder() is None
    assert window.pages.currentWidget() is window.no_model_page


def test_a_label_added_later_trains_a_model_the_admin_promotes(
    open_window, trained_settings, qtbot, tmp_path, unseen_photos
) -> None:
    window = open_window(trained_settings)
    backend = window.backend
    backend.choose_admin_password("admin password")
    backend.sign_in("admin password")
    clover = tmp_path / "new" / "clover"
    clover.mkdir(parents=True)
    for photo in unseen_photos["grass"][:12]:  # photos the home does not have, a new name
        (clover / photo.name).symlink_to(photo)

    get_started = open_get_started(window)
    assert get_started.windowTitle() == "Add labelled photos"
    drop(get_started, [clover])
    qtbot.waitUntil(lambda: get_started.preview is not None, timeout=60_000)
    preview = get_started.preview
    assert preview.ok and preview.labels_after == ["dandelion", "grass", "clover"]
    assert preview.new_labels == ["clover"] and preview.new_photos == {"clover": 12}
    assert "clover (new)" in get_started.preview_page.labels_line.text()

    outcome = import_and_wait(qtbot, get_started)
    # The gate cannot compare models on other labels: the new model waits for the admin.
    assert outcome["state"] == ModelState.CANDIDATE and outcome["labels"] == preview.labels_after
    assert "admin" in get_started.result_page.decision.text()
    config = tomllib.loads((trained_settings.home / "config.toml").read_text())
    assert config["labels"] == ["dandelion", "grass", "clover"]
    reread = load_settings({}, overrides={"home": trained_settings.home})
    assert reread.labels == ("dandelion", "grass", "clover")

    promote = get_started.result_page.promote_button
    assert promote.isVisibleTo(get_started.result_page)
    promote.click()
    qtbot.waitUntil(lambda: backend.champion().version == outcome["version"], timeout=30_000)
    qtbot.waitUntil(lambda: window.model_label.text().startswith(f"Model v{outcome['version']}"))
    assert backend.champion().labels == ["dandelion", "grass", "clover"]
    filters = [window.filter_box.itemText(i) for i in range(window.filter_box.count())]
    assert "clover" in filters
    labels = window.submit_panel.label_box
    assert [labels.itemText(i) for i in range(labels.count())] == ["dandelion", "grass", "clover"]


def test_photos_added_to_a_known_label_retrain_and_pass_the_gate(
    open_window, trained_settings, qtbot, tmp_path, unseen_photos
) -> None:
    window = open_window(trained_settings)
    grass = tmp_path / "more" / "grass"
    grass.mkdir(parents=True)
    for photo in unseen_photos["grass"][:10]:
        (grass / photo.name).symlink_to(photo)
    get_started = open_get_started(window, [grass])
    qtbot.waitUntil(lambda: get_started.preview is not None, timeout=60_000)
    preview = get_started.preview
    assert preview.new_photos == {"grass": 10} and not preview.new_labels
    assert preview.already_present == {}
    outcome = import_and_wait(qtbot, get_started)
    assert outcome["gate"] is not None and outcome["gate"]["champion_version"] == 1
    assert outcome["state"] in (ModelState.CHAMPION, ModelState.REFUSED)
    assert outcome["photos"]["added"] == 10
    with App(trained_settings, actor="tests") as app:
        assert app.home_labels() == ["dandelion", "grass"]
    assert not (trained_settings.home / "config.toml").exists()  # the labels did not change
