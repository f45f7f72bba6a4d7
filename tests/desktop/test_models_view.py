"""The models view: versions with the champion marked, promote and rollback, the plots and
the training curves; Retrain now on a worker, or in the app when no worker serves the queue,
with Cancel."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.app import App
from core.registry import ModelVersion, Registry, RetrainRun
from core.wire import ModelState
from desktop.models_view import open_models_window
from tests.desktop.conftest import retrain_now, worker_on

pytestmark = pytest.mark.gui


def test_promote_and_rollback(open_window, trained_settings, qtbot) -> None:
    window = open_window(trained_settings)
    backend = window.backend
    second = backend.api.train()  # from the embedding cache: nothing is embedded again
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


def test_retrain_now_is_done_by_a_worker(open_window, trained_settings, qtbot, tmp_path) -> None:
    window = open_window(trained_settings)
    backend = window.backend
    backend.choose_admin_password("admin password")
    backend.sign_in("admin password")
    models = open_models_window(window)
    qtbot.waitUntil(lambda: models.table.rowCount() == 1)
    with worker_on(trained_settings.home, tmp_path / "worker.log"):
        retrain_now(qtbot, models)
    qtbot.waitUntil(lambda: models.table.rowCount() == 2, timeout=30_000)


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


def curve_points(models) -> dict[str, list[tuple[float, float]]]:
    return {
        series.name(): [(point.x(), point.y()) for point in series.points()]
        for series in models.curves.chart().series()
    }


def test_training_curves_show_the_stored_history(open_window, trained_settings, qtbot) -> None:
    window = open_window(trained_settings)
    models = open_models_window(window)
    qtbot.waitUntil(lambda: models.table.rowCount() == 1)
    history = window.backend.champion().metrics["epochs"]
    assert [entry["epoch"] for entry in history] == list(range(1, trained_settings.epochs + 1))
    assert curve_points(models) == {
        name: [(entry["epoch"], entry[field]) for entry in history]
        for name, field in (
            ("training loss", "train_loss"),
            ("validation loss", "val_loss"),
            ("training accuracy", "train_accuracy"),
            ("validation accuracy", "val_accuracy"),
        )
    }
    assert models.curves.chart().title() == "Version 1: training curves"


def test_a_version_without_history_shows_the_empty_state(
    open_window, trained_settings, qtbot
) -> None:
    # Versions trained before the history was kept have no "epochs" in their metrics.
    registry = Registry(trained_settings.registry_url)
    with registry.session() as session:
        old = session.get(ModelVersion, 1)
        old.metrics = {name: value for name, value in old.metrics.items() if name != "epochs"}
    registry.dispose()
    window = open_window(trained_settings)
    second = window.backend.api.train()

    models = open_models_window(window)
    qtbot.waitUntil(lambda: models.table.rowCount() == 2)
    models.table.selectRow(0)  # the newest: trained with its history
    assert models.selected().version == second.version_id
    assert {name: len(points) for name, points in curve_points(models).items()} == {
        name: trained_settings.epochs
        for name in ("training loss", "validation loss", "training accuracy", "validation accuracy")
    }
    models.table.selectRow(1)  # the old version
    assert models.selected().version == 1
    assert models.curves.chart().series() == []
    assert models.curves.chart().title() == "Version 1: no curves recorded for this version"
    assert models.confusion.matrix  # its validation plots still show


def signed_in_models(open_window, settings, qtbot):
    window = open_window(settings)
    window.backend.choose_admin_password("admin password")
    window.backend.sign_in("admin password")
    models = open_models_window(window)
    qtbot.waitUntil(lambda: models.table.rowCount() == 1)
    return window, models


def test_retrain_now_runs_in_the_app_when_no_worker_serves_the_queue(
    open_window, trained_settings, qtbot
) -> None:
    window, models = signed_in_models(open_window, trained_settings, qtbot)
    assert window.backend.jobs_run_here()  # no worker has ever beaten on this queue
    epochs: list = []
    models.retrain_button.click()
    qtbot.waitUntil(lambda: models.job is not None, timeout=30_000)
    models.job.epoch.connect(epochs.append)
    qtbot.waitUntil(lambda: not models.retraining, timeout=300_000)
    assert models.statusBar().currentMessage().startswith("Retrain finished")
    assert [stats.epoch for stats in epochs] == list(range(1, trained_settings.epochs + 1))
    qtbot.waitUntil(lambda: models.table.rowCount() == 2, timeout=30_000)
    with App(trained_settings, actor="tests") as app:
        with app.registry.session() as session:
            run = session.scalars(select(RetrainRun)).one()
        assert run.finished_at is not None and run.candidate_version_id == 2
        assert app.doctor().clean and app.lock_holder() is None


def test_cancel_mid_training_leaves_nothing_half_made(open_window, trained_settings, qtbot) -> None:
    # Many epochs, so that Cancel surely arrives while the head trains.
    long_training = trained_settings.model_copy(update={"epochs": 3000})
    _window, models = signed_in_models(open_window, long_training, qtbot)
    models.retrain_button.click()
    qtbot.waitUntil(lambda: models.job is not None, timeout=30_000)
    job = models.job
    job.progress.connect(lambda stage, done, _total: stage == "train" and models.job_panel.cancel())
    qtbot.waitUntil(lambda: not models.retraining, timeout=300_000)
    assert job.cancelled and "Cancelled" in models.error_label.text()
    assert models.retrain_button.isEnabled() and not models.job_panel.isVisibleTo(models)
    assert models.job_panel.bars["train"].value() < 3000
    with App(trained_settings, actor="tests") as app:
        assert [version.version for version in app.versions()] == [1]
        assert len(list(app.store.list("model/"))) == 1
        with app.registry.session() as session:
            run = session.scalars(select(RetrainRun)).one()
        assert run.finished_at is not None and run.reason.startswith("cancelled by desktop-admin")
        assert run.candidate_version_id is None
        assert app.doctor().clean and app.lock_holder() is None
