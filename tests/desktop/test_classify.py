"""Drag and drop onto the main window: predictions, progress, cancel, filter, sort, export."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from desktop.results import ALL, ERRORS, ROW_ROLE, UNSURE, RowState
from tests.desktop.conftest import drop
from tests.quality.samples import non_plant_images

pytestmark = pytest.mark.gui


def wait_done(qtbot, window, timeout: int = 120_000) -> None:
    qtbot.waitUntil(lambda: window.run is not None and not window.run.running, timeout=timeout)


def test_drop_files_shows_labels_confidence_and_progress(
    open_window, trained_settings, qtbot, unseen_photos
) -> None:
    window = open_window(trained_settings)
    assert window.pages.currentWidget() is window.drop_page
    assert window.drop_page.title.text() == "Drop photos here"
    assert window.model_label.text().endswith("· efficientnet_lite0")

    photos = unseen_photos["dandelion"][:4] + unseen_photos["grass"][:4]
    drop(window, photos)
    assert window.progress_area.isVisibleTo(window)
    wait_done(qtbot, window)

    assert window.progress.value() == window.progress.maximum() == len(photos)
    assert not window.progress_area.isVisibleTo(window)
    rows = {row.path: row for row in window.results.rows}
    assert set(rows) == set(photos)
    correct = 0
    for path, row in rows.items():
        assert row.state == RowState.DONE
        assert row.thumbnail is not None and not row.thumbnail.isNull()
        assert set(row.probabilities) == {"dandelion", "grass"}
        assert row.confidence == pytest.approx(max(row.probabilities.values()))
        correct += row.label == path.parent.name
    assert correct >= 7  # a real pretrained backbone on real photos
    assert window.pages.currentWidget() is window.splitter
    assert "8 classified" in window.counts_label.text()


def test_drop_folder_with_a_corrupt_photo(open_window, trained_settings, qtbot, corrupt_folder):
    window = open_window(trained_settings)
    drop(window, [corrupt_folder])
    wait_done(qtbot, window)
    rows = {row.path.name: row for row in window.results.rows}
    assert len(rows) == 3
    assert rows["broken.jpg"].state == RowState.ERROR
    assert "truncated" in rows["broken.jpg"].error
    others = [row for name, row in rows.items() if name != "broken.jpg"]
    assert all(row.state == RowState.DONE and row.label for row in others)

    window.filter_box.setCurrentText(ERRORS)
    assert window.proxy.rowCount() == 1
    window.filter_box.setCurrentText("grass")
    assert all(
        window.proxy.index(i, 0).data(ROW_ROLE).label == "grass"
        for i in range(window.proxy.rowCount())
    )
    window.filter_box.setCurrentText(ALL)
    assert window.proxy.rowCount() == 3


def test_cancel_stops_the_run(open_window, trained_settings, qtbot, unseen_photos) -> None:
    window = open_window(trained_settings)
    photos = unseen_photos["grass"][:40]
    drop(window, photos)
    # Cancel as soon as the first batch is in: the rest is never classified.
    qtbot.waitUntil(lambda: window.results.counts()["classified"] > 0, timeout=120_000)
    window.cancel_button.click()
    wait_done(qtbot, window)
    states = [row.state for row in window.results.rows]
    assert states.count(RowState.DONE) < len(photos)
    assert states.count(RowState.CANCELLED) == len(photos) - states.count(RowState.DONE)
    assert not window.progress_area.isVisibleTo(window)


def test_sort_unsure_and_export(open_window, trained_settings, qtbot, unseen_photos, tmp_path):
    window = open_window(trained_settings)
    photos = unseen_photos["dandelion"][4:9] + unseen_photos["grass"][4:9]
    drop(window, photos)
    wait_done(qtbot, window)

    window.sort_box.setCurrentText("Least confident first")
    shown = [
        window.proxy.index(i, 0).data(ROW_ROLE).confidence for i in range(window.proxy.rowCount())
    ]
    assert shown == sorted(shown)
    window.sort_box.setCurrentText("Most confident first")
    shown = [
        window.proxy.index(i, 0).data(ROW_ROLE).confidence for i in range(window.proxy.rowCount())
    ]
    assert shown == sorted(shown, reverse=True)

    window.results.unsure_below = 1.01  # every photo is "unsure" under an impossible bar
    window.filter_box.setCurrentText(UNSURE)
    assert window.proxy.rowCount() == len(photos)
    window.results.unsure_below = 0.0  # left: the model's own verdicts (calibrated, OOD)
    window.proxy.set_choice(UNSURE)
    rows = [window.results.index(i, 0).data(ROW_ROLE) for i in range(len(photos))]
    own_verdicts = [row for row in rows if row.is_unsure or row.out_of_distribution]
    assert window.proxy.rowCount() == len(own_verdicts) < len(photos)
    window.filter_box.setCurrentText(ALL)

    target = tmp_path / "out.csv"
    window.export_csv(target)
    with target.open(newline="") as handle:
        exported = list(csv.DictReader(handle))
    assert {Path(row["path"]) for row in exported} == set(photos)
    for row in exported:
        assert row["prediction"] in ("dandelion", "grass")
        assert float(row["p_dandelion"]) + float(row["p_grass"]) == pytest.approx(1, abs=1e-3)


def test_heatmap_toggle_draws_the_selected_photo_and_says_why_it_cannot(
    open_window, trained_settings, qtbot, unseen_photos, tmp_path
) -> None:
    from PIL import Image
    from PySide6.QtCore import QItemSelectionModel

    photos = unseen_photos["dandelion"][:1] + unseen_photos["grass"][:1]
    gone = tmp_path / "moved-away.jpg"
    gone.write_bytes(unseen_photos["grass"][1].read_bytes())
    window = open_window(trained_settings)
    drop(window, [*photos, gone])
    wait_done(qtbot, window)
    gone.unlink()  # classified, then moved away before its heatmap is asked for
    heatmap = window.heatmap

    def select(path: Path) -> None:
        position = next(
            i
            for i in range(window.proxy.rowCount())
            if window.proxy.index(i, 0).data(ROW_ROLE).path == path
        )
        window.grid.selectionModel().select(
            window.proxy.index(position, 0), QItemSelectionModel.SelectionFlag.ClearAndSelect
        )

    select(photos[0])
    assert heatmap.box.isEnabled() and not heatmap.picture.isVisibleTo(window)
    heatmap.box.setChecked(True)
    for photo in photos:
        select(photo)
        qtbot.waitUntil(lambda: not heatmap.picture.pixmap().isNull(), timeout=60_000)
        assert heatmap.note.text() == ""
        drawn = heatmap.picture.pixmap()
        with Image.open(photo) as image:
            width, height = image.size
        assert abs(drawn.width() / drawn.height() - width / height) < 0.05
    assert set(heatmap.cache) == {str(photo) for photo in photos}

    select(gone)
    qtbot.waitUntil(lambda: heatmap.note.text().startswith("No heatmap:"), timeout=60_000)
    assert heatmap.picture.pixmap().isNull()

    heatmap.box.setChecked(False)
    assert not heatmap.picture.isVisibleTo(window)


def test_images_that_are_not_plant_photos_are_called_so(
    open_window, trained_settings, qtbot, unseen_photos, tmp_path
) -> None:
    strangers = []
    for name, image in non_plant_images():
        strangers.append((tmp_path / name).with_suffix(".png"))
        image.save(strangers[-1])
    photos = unseen_photos["dandelion"][:10] + unseen_photos["grass"][:10]
    window = open_window(trained_settings)
    drop(window, [*strangers, *photos])
    wait_done(qtbot, window, timeout=240_000)

    rows = {row.path: row for row in window.results.rows}
    flagged = [path for path in strangers if rows[path].out_of_distribution]
    assert len(flagged) >= 0.8 * len(strangers), sorted(set(strangers) - set(flagged))
    # This champion knows 60 photos, so its out-of-distribution line is coarse (2 of these
    # 20 flagged here); tests/quality holds the full model to the goal.
    assert sum(rows[path].out_of_distribution for path in photos) <= 4
    for path in flagged:
        assert window.results.status_text(rows[path]).startswith("Not a dandelion or grass photo")
