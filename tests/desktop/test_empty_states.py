"""The app on a fresh home: a helpful empty state; and bad input shown on its own row (with a
model: on a fresh home a drop is taken for label folders, for Get started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from desktop.results import RowState
from tests.desktop.conftest import drop

pytestmark = pytest.mark.gui


def test_fresh_home_says_train_a_model(open_window, settings) -> None:
    window = open_window(settings)
    assert window.pages.currentWidget() is window.no_model_page
    assert window.no_model_page.title.text() == "No model yet: train one"
    assert window.model_label.text() == "No model yet"
    assert window.mode_label.text() == "Local"


def test_corrupt_file_is_an_error_on_that_photo_only(
    open_window, trained_settings, qtbot, tmp_path: Path, dataset_photos
) -> None:
    window = open_window(trained_settings)
    broken = tmp_path / "broken.jpg"
    data = dataset_photos["grass"][0].read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo at all")
    drop(window, [broken, text])
    qtbot.waitUntil(lambda: not window.run.running)
    rows = {row.path.name: row for row in window.results.rows}
    assert rows["broken.jpg"].state == RowState.ERROR
    assert "corrupt or truncated" in rows["broken.jpg"].error
    assert rows["notes.jpg"].state == RowState.ERROR
    assert "Not a supported image" in rows["notes.jpg"].error
    assert window.pages.currentWidget() is window.splitter
    assert "2 errors" in window.counts_label.text()
