"""Desktop fixtures: real Qt widgets offscreen (tests/conftest.py sets QT_QPA_PLATFORM),
a home with a champion trained once per session on the shared photos, and drop helpers."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from core.app import App
from core.config import Settings, load_settings
from core.wire import Submission
from desktop.app import create_application, preferences
from desktop.backends import Backend, Queued
from desktop.main_window import MainWindow
from desktop.models_view import ModelsWindow
from tests.services import stop_process
from worker.tasks import worker_heartbeat

pytestmark = pytest.mark.gui


def drop(widget: QWidget, paths: list[Path]) -> None:
    """Drag file URLs onto ``widget`` and drop them, with the events a file manager's drag
    sends: enter (which must be accepted), move, drop."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path)) for path in paths])
    centre = QPointF(widget.width() / 2, widget.height() / 2)
    args = (
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    enter = QDragEnterEvent(centre, *args)
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted(), "the window refused the drag"
    QApplication.sendEvent(widget, QDragMoveEvent(centre, *args))
    dropped = QDropEvent(centre, *args)
    QApplication.sendEvent(widget, dropped)
    assert dropped.isAccepted(), "the window refused the drop"


def submit(backend: Backend, photo: Path, label: str) -> Submission | Queued:
    """Submit a photo file as the main window does."""
    return backend.submit(photo.read_bytes(), label, source=str(photo))


@contextlib.contextmanager
def worker_on(home: Path, log: Path) -> Iterator[None]:
    """A real ``classifi worker`` on ``home`` while the block runs (its stderr in ``log``),
    once its heartbeat says it serves the queue."""
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("CLASSIFI_")
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "classifi", "worker"],
        env={
            **environment,
            "HF_HUB_OFFLINE": "1",
            "CLASSIFI_HOME": str(home),
            "CLASSIFI_BACKBONE": "efficientnet_lite0",
            "CLASSIFI_WORKER_METRICS_PORT": "0",  # no metrics: port 9100 may be taken here
        },
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    settings = load_settings({}, overrides={"home": home})
    try:
        deadline = time.monotonic() + 60
        while worker_heartbeat(settings) is None:
            assert worker.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the worker never beat"
            time.sleep(0.2)
        yield
    finally:
        stop_process(worker)


def retrain_now(qtbot: QtBot, models: ModelsWindow, *, by_worker: bool = True) -> None:
    """Press "Retrain now" and wait until the models window says the retrain finished: on a
    worker (its task id and busy bar) or in a child process of the app (its job panel)."""
    models.retrain_button.click()
    if by_worker:
        qtbot.waitUntil(lambda: models.retrain_task is not None, timeout=30_000)
        assert models.retrain_progress.isVisibleTo(models) and models.job is None
    else:
        qtbot.waitUntil(lambda: models.job is not None, timeout=30_000)
        assert models.job_panel.isVisibleTo(models) and models.retrain_task is None
    qtbot.waitUntil(lambda: not models.retraining, timeout=300_000)
    assert models.retrain_button.isEnabled() and not models.retrain_progress.isVisibleTo(models)
    assert not models.job_panel.isVisibleTo(models)
    assert models.statusBar().currentMessage().startswith("Retrain finished"), (
        models.error_label.text()
    )


@pytest.fixture(scope="session")
def qapp_cls() -> type[QApplication]:
    return QApplication


@pytest.fixture(scope="session")
def qapp(qapp_args: list[str]) -> QApplication:
    """pytest-qt's QApplication, set up as the app sets it up (theme, icon, names)."""
    return create_application(qapp_args)


@pytest.fixture
def open_window(qtbot: QtBot) -> Iterator[Callable[..., MainWindow]]:
    """Open a main window on ``settings`` (local mode unless a backend is given)."""
    windows: list[MainWindow] = []

    def build(settings: Settings, backend: Backend | None = None) -> MainWindow:
        window = MainWindow(settings, preferences(settings), backend)
        qtbot.addWidget(window)
        window.show()
        windows.append(window)
        qtbot.waitUntil(
            lambda: window._champion_known or "unavailable" in window.model_label.text()
        )
        return window

    yield build
    for window in windows:
        if window.run is not None:
            window.run.cancel()
            qtbot.waitUntil(lambda w=window: not w.run.running, timeout=60_000)


@pytest.fixture
def corrupt_folder(tmp_path: Path, dataset_photos: dict[str, list[Path]]) -> Path:
    """Two real photos and a truncated JPEG in one folder."""
    folder = tmp_path / "dropped"
    folder.mkdir()
    for label in ("dandelion", "grass"):
        photo = dataset_photos[label][-1]
        (folder / f"{label}-{photo.name}").write_bytes(photo.read_bytes())
    good = dataset_photos["grass"][-2].read_bytes()
    (folder / "broken.jpg").write_bytes(good[: len(good) // 3])
    return folder


TRAIN_PER_LABEL = 30  # enough for a real champion; the rest of the photos are dropped in tests


@pytest.fixture(scope="session")
def trained_home(
    tmp_path_factory: pytest.TempPathFactory, dataset_photos: dict[str, list[Path]]
) -> Path:
    """A home whose champion is trained once per session with the real offline backbone on
    the first photos of each label (linked, not copied). Tests copy it, so that each one
    starts from the same state without training (or embedding) again."""
    root = tmp_path_factory.mktemp("trained")
    source = root / "source"
    for label, photos in dataset_photos.items():
        (source / label).mkdir(parents=True)
        for photo in photos[:TRAIN_PER_LABEL]:
            (source / label / photo.name).symlink_to(photo)
    settings = load_settings(
        {}, overrides={"home": root / "home", "backbone": "efficientnet_lite0"}
    )
    with App(settings, actor="tests") as app:
        assert not app.ingest(app.list_source(str(source))).skipped
        assert app.train().became_champion
    return settings.home


@pytest.fixture
def trained_settings(trained_home: Path, tmp_path: Path) -> Settings:
    """Settings on a private copy of the trained home."""
    home = tmp_path / "home"
    shutil.copytree(trained_home, home)
    return load_settings({}, overrides={"home": home, "backbone": "efficientnet_lite0"})


@pytest.fixture
def unseen_photos(dataset_photos: dict[str, list[Path]]) -> dict[str, list[Path]]:
    """Photos the champion was not trained on."""
    return {label: photos[TRAIN_PER_LABEL:] for label, photos in dataset_photos.items()}
