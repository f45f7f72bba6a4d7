"""Qt deletes a closed window's Qt objects, not Python's garbage collector.

A collection that deleted a closed window's results model (its signals still connected to
the window's slots) crashed the process inside a later event loop: seldom, and only in long
sessions such as CI's. So each of those objects is a child of its window, and dies with it."""

from __future__ import annotations

from pathlib import Path

import shiboken6
from PySide6.QtCore import QEvent
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from core.config import Settings
from desktop.admin_window import open_admin_window
from desktop.app import preferences
from desktop.main_window import MainWindow

ADMIN_PASSWORD = "a review window's lifetime"


def close_and_delete(window: MainWindow) -> None:
    """Close the window as the user does, then let Qt delete what it owns."""
    window.close()
    window.deleteLater()
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


def test_closing_the_window_deletes_its_models_and_classification_runs(
    trained_settings: Settings, qtbot: QtBot, unseen_photos: dict[str, list[Path]]
) -> None:
    window = MainWindow(trained_settings, preferences(trained_settings))
    window.show()
    qtbot.waitUntil(lambda: window._champion_known, timeout=60_000)
    runs = []
    for label in ("dandelion", "grass"):  # two runs: the second replaces the first
        window.classify_paths(unseen_photos[label][:2])
        runs.append(window.run)
        qtbot.waitUntil(lambda: window.run is not None and not window.run.running)
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    assert not shiboken6.isValid(runs[0])  # a finished run goes when the next one starts
    owned = [window.results, window.proxy, runs[1]]
    assert all(shiboken6.isValid(obj) for obj in owned)

    close_and_delete(window)
    assert not shiboken6.isValid(window)
    assert [type(obj).__name__ for obj in owned if shiboken6.isValid(obj)] == []


def test_closing_the_main_window_deletes_the_review_window_and_its_models(
    trained_settings: Settings, qtbot: QtBot
) -> None:
    window = MainWindow(trained_settings, preferences(trained_settings))
    window.show()
    qtbot.waitUntil(lambda: window._champion_known, timeout=60_000)
    window.backend.choose_admin_password(ADMIN_PASSWORD)
    window.backend.sign_in(ADMIN_PASSWORD)
    review = open_admin_window(window)
    assert review is not None
    qtbot.waitUntil(lambda: review.statusBar().currentMessage() == "0 pending", timeout=30_000)
    owned = [review, review.model, review.proxy]
    assert all(shiboken6.isValid(obj) for obj in owned)

    close_and_delete(window)
    assert [type(obj).__name__ for obj in owned if shiboken6.isValid(obj)] == []
