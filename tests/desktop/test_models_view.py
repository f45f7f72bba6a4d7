"""The models view: versions with the champion marked, promote and rollback, the plots."""

from __future__ import annotations

import pytest

from core.model.training import train_model
from core.registry import ModelState
from desktop.models_view import open_models_window

pytestmark = pytest.mark.gui


def test_promote_and_rollback(open_window, trained_settings, qtbot) -> None:
    window = open_window(trained_settings)
    backend = window.backend
    second = train_model(trained_settings, backend.registry, backend.store)  # cache: no embedding
    assert not second.became_champion
    backend.choose_admin_password("admin password")
    backend.sign_in("admin password")

    models = open_models_window(window)
    qtbot.waitUntil(lambda: models.table.rowCount() == 2)
    states = {models.table.item(r, 0).text(): models.table.item(r, 1).text() for r in range(2)}
    assert states == {str(second.version_id): "candidate", "1": "★ champion"}

    models.table.selectRow(0)  # the newest, version 2
    assert models.selected().version == second.version_id
    models.promote_button.click()
    qtbot.waitUntil(lambda: backend.champion().version == second.version_id)
    qtbot.waitUntil(lambda: models.table.item(0, 1).text() == "★ champion")
    qtbot.waitUntil(lambda: window.model_label.text().startswith(f"Model v{second.version_id}"))

    models.rollback_button.click()
    qtbot.waitUntil(lambda: backend.champion().version == 1)
    qtbot.waitUntil(lambda: models.table.item(1, 1).text() == "★ champion")
    assert {m.version: m.state for m in backend.versions()} == {
        1: ModelState.CHAMPION,
        second.version_id: ModelState.ARCHIVED,
    }


def test_plots_render(open_window, trained_settings, qtbot) -> None:
    window = open_window(trained_settings)
    models = open_models_window(window)
    qtbot.waitUntil(lambda: models.table.rowCount() == 1)
    matrix = models.confusion
    champion = window.backend.champion()
    assert matrix.matrix == champion.metrics["confusion_matrix"]
    assert sum(map(sum, matrix.matrix)) == champion.metrics["count"]
    image = matrix.grab().toImage()
    colours = {
        image.pixelColor(x, y).name()
        for x in range(0, image.width(), 4)
        for y in range(0, image.height(), 4)
    }
    assert len(colours) > 10  # cells, numbers and labels were painted, not a blank widget
    series = models.scores.chart().series()
    assert len(series) == 1 and [s.label() for s in series[0].barSets()] == [
        "precision",
        "recall",
        "f1",
    ]
