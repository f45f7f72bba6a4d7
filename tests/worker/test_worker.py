"""The Huey worker: instance from settings, cron schedules, the retrain lock, the periodic
check, two real worker processes on one Redis, and graceful stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from huey import RedisExpireHuey, SqliteHuey

from core.errors import ConfigError
from core.model.versions import list_versions
from tests.installation import System
from tests.loop.conftest import submit_and_approve
from worker.huey_app import create_huey, parse_cron
from worker.tasks import build_tasks, enqueue_retrain, task_result

REPO_ROOT = Path(__file__).resolve().parents[2]
SATURDAY_MIDNIGHT = datetime(2026, 11, 28, 0, 0)


def test_the_queue_url_picks_the_storage(make_settings, redis_url: str) -> None:
    assert isinstance(create_huey(make_settings()), SqliteHuey)
    assert isinstance(create_huey(make_settings(queue_url=redis_url)), RedisExpireHuey)
    with pytest.raises(ConfigError, match="queue_url"):
        create_huey(make_settings(queue_url="amqp://localhost"))


def test_cron_strings_become_crontabs() -> None:
    weekly = parse_cron("0 0 * * 6", "retrain_schedule")
    assert SATURDAY_MIDNIGHT.weekday() == 5  # Saturday
    assert weekly(SATURDAY_MIDNIGHT)
    assert not weekly(SATURDAY_MIDNIGHT.replace(minute=1))
    assert not weekly(SATURDAY_MIDNIGHT.replace(day=29))
    assert parse_cron("*/15 8-18 * * 1-5", "x")(datetime(2026, 11, 27, 9, 30))
    with pytest.raises(ConfigError, match=r"retrain_schedule.*5-field"):
        parse_cron("0 0 * *", "retrain_schedule")
    with pytest.raises(ConfigError, match="ingest_schedule"):
        parse_cron("0 0 * * sat", "ingest_schedule")
    with pytest.raises(ConfigError, match="not a valid"):
        parse_cron("61 0 * * *", "ingest_schedule")


def test_scheduled_ingest_is_registered_only_when_configured(make_settings, dataset_dir) -> None:
    assert build_tasks(make_settings()).scheduled_ingest is None
    tasks = build_tasks(
        make_settings(ingest_sources=(str(dataset_dir),), ingest_schedule="30 2 * * *")
    )
    assert tasks.scheduled_ingest is not None
    names = {task.name for task in tasks.huey.read_periodic(datetime(2026, 11, 27, 2, 30))}
    assert names == {"scheduled_ingest"}


@pytest.mark.slow
def test_the_weekly_check_fires_on_saturday_midnight(make_system, fresh_photos) -> None:
    system: System = make_system()
    submit_and_approve(system, fresh_photos["dandelion"][:5] + fresh_photos["grass"][:5])
    tasks = build_tasks(system.settings)
    assert tasks.huey.read_periodic(SATURDAY_MIDNIGHT.replace(hour=1)) == []
    due = tasks.huey.read_periodic(SATURDAY_MIDNIGHT)
    assert [task.name for task in due] == ["retrain_check"]

    outcome = tasks.huey.execute(due[0])  # what a worker does with the scheduled task
    assert outcome["due"] and outcome["new_validated"] == 10
    assert outcome["candidate_version"] == list_versions(system.registry)[0].id


@pytest.mark.slow
def test_a_held_lock_makes_a_retrain_stand_down(make_system) -> None:
    system: System = make_system()
    tasks = build_tasks(system.settings, immediate=True)
    with tasks.retrain_lock():
        outcome = tasks.retrain(force=True, actor="test").get()
    assert outcome["locked"] and not outcome["due"]
    assert len(list_versions(system.registry)) == 1
    outcome = tasks.retrain(force=True, actor="test").get()
    assert outcome["due"] and len(list_versions(system.registry)) == 2


def start_worker(settings_home: Path, queue_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "CLASSIFI_HOME": str(settings_home),
        "CLASSIFI_BACKBONE": "efficientnet_lite0",
        "CLASSIFI_QUEUE_URL": queue_url,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "classifi", "worker", "--workers", "2"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )


def wait_for_results(
    settings, ids: list[str], workers: list[subprocess.Popen[bytes]]
) -> list[dict]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if any(worker.poll() is not None for worker in workers):
            raise RuntimeError("a worker exited before the retrains finished (see its log)")
        results = [task_result(settings, task_id) for task_id in ids]
        if all(result is not None for result in results):
            return results  # type: ignore[return-value]
        time.sleep(0.5)
    raise TimeoutError("the workers did not finish the retrains")


@pytest.mark.slow
@pytest.mark.integration
def test_two_workers_on_one_redis_retrain_once(make_system, redis_url: str, tmp_path) -> None:
    system: System = make_system(queue_url=redis_url)
    system.registry.dispose()
    # Both retrains are queued before either worker starts, so each worker takes one.
    ids = [enqueue_retrain(system.settings, actor=f"user{n}") for n in (1, 2)]
    workers = [
        start_worker(system.settings.home, redis_url, tmp_path / f"worker{n}.log") for n in (1, 2)
    ]
    try:
        results = wait_for_results(system.settings, ids, workers)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGINT)
        codes = [worker.wait(timeout=120) for worker in workers]
    assert sorted(bool(result.get("locked")) for result in results) == [False, True], results
    assert len(list_versions(system.registry)) == 2  # the champion and one candidate
    assert codes == [0, 0], [(tmp_path / f"worker{n}.log").read_text()[-2000:] for n in (1, 2)]


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_the_worker_stops_on_a_signal(make_settings, tmp_path, stop: signal.Signals) -> None:
    settings = make_settings()
    log = tmp_path / "worker.log"
    worker = start_worker(settings.home, settings.queue_url, log)
    try:
        deadline = time.monotonic() + 120
        while b"Huey consumer started" not in log.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)  # the consumer installs its signal handlers just after that line
        worker.send_signal(stop)
        code = worker.wait(timeout=120)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert code == 0, log.read_text()[-2000:]
    assert "worker stopped" in log.read_text()
