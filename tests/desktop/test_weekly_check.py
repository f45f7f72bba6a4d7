"""The weekly retrain check in the app (local mode, no worker): due when a scheduled minute
passed since the last check it ran, then carried out in a child process."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from core.app import App
from desktop.weekly_check import LAST_CHECK, slot_between
from worker.huey_app import parse_cron

pytestmark = pytest.mark.gui

SATURDAY_MIDNIGHT = parse_cron("0 0 * * 6", "retrain_schedule")


def test_a_slot_counts_once_and_at_most_a_week_back() -> None:
    saturday = datetime(2026, 11, 28, 0, 0)  # a Saturday
    assert slot_between(SATURDAY_MIDNIGHT, saturday - timedelta(days=1), saturday)
    assert slot_between(
        SATURDAY_MIDNIGHT, saturday - timedelta(minutes=1), saturday + timedelta(hours=5)
    )
    assert not slot_between(SATURDAY_MIDNIGHT, saturday, saturday + timedelta(days=6))
    assert not slot_between(
        SATURDAY_MIDNIGHT, saturday + timedelta(minutes=1), saturday + timedelta(days=3)
    )


def test_the_first_start_counts_from_now(open_window, trained_settings) -> None:
    window = open_window(trained_settings)
    check = window.weekly_check
    assert check.job is None  # nothing missed on the first start: no check ever ran here
    assert isinstance(window.prefs.value(LAST_CHECK), str)


def test_a_missed_check_runs_in_the_app(open_window, trained_settings, qtbot) -> None:
    window = open_window(trained_settings)
    check = window.weekly_check
    week_ago = datetime.now() - timedelta(days=7, minutes=5)
    window.prefs.setValue(LAST_CHECK, week_ago.isoformat(timespec="minutes"))
    outcomes: list = []
    check.started.connect(lambda job: job.finished.connect(outcomes.append))
    check.tick()
    assert check.job is not None and check.job.kind == "retrain"
    qtbot.waitUntil(lambda: bool(outcomes), timeout=120_000)
    assert not outcomes[0]["due"]  # no new photos: the check records why it waits
    assert window.statusBar().currentMessage().startswith("Weekly retrain check: 0 of 10")
    with App(trained_settings, actor="tests") as app:
        checks = [entry for entry in app.audit_log() if entry.action == "retrain.check"]
        assert checks and checks[0].actor == "desktop-admin"
    last = datetime.fromisoformat(str(window.prefs.value(LAST_CHECK)))
    assert last > week_ago and not check.due(datetime.now())
