"""The Huey worker: instance from settings, cron schedules, the periodic retrain check and
ingest (run for real by a worker process), two real workers on one Redis, graceful stops."""

from __future__ import annotations

import shutil
import signal
from datetime import datetime
from pathlib import Path

import pytest
from huey import RedisExpireHuey, SqliteHuey
from sqlalchemy import func, select

from core.app import App
from core.errors import ConfigError
from core.model.versions import list_versions
from core.registry import Photo, PhotoStatus
from tests.installation import System
from tests.loop.conftest import submit_and_approve
from tests.worker.conftest import poll, signal_handlers_installed, start_worker
from worker.huey_app import create_huey, parse_cron
from worker.tasks import STOOD_DOWN, build_tasks, enqueue_retrain, ingest_sources, task_result

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
    assert names == {"scheduled_ingest", "heartbeat"}  # the heartbeat is every minute's


def label_folders(root: Path, photos: dict[str, list[Path]], count: int) -> Path:
    """A folder source: ``count`` shared photos per label, in one sub-folder per label."""
    for label, paths in photos.items():
        (root / label).mkdir(parents=True)
        for path in paths[:count]:
            shutil.copy(path, root / label / path.name)
    return root


def test_a_missing_source_does_not_stop_the_others(
    make_settings, tmp_path: Path, dataset_photos: dict[str, list[Path]]
) -> None:
    source = label_folders(tmp_path / "source", dataset_photos, 1)
    missing = tmp_path / "unmounted"
    settings = make_settings(ingest_sources=(str(missing), str(source)))
    with App(settings, actor="worker") as app:
        reports = ingest_sources(app)
    assert "does not exist" in reports[str(missing)]["error"]
    assert reports[str(source)]["added"] == 2


def trained_photos(app: App) -> int:
    with app.registry.session() as session:
        query = select(func.count()).select_from(Photo).where(Photo.status == PhotoStatus.TRAINED)
        return int(session.scalar(query) or 0)


@pytest.mark.slow
def test_a_worker_ingests_its_sources_on_schedule(
    make_settings, tmp_path: Path, dataset_photos: dict[str, list[Path]]
) -> None:
    """The periodic ingest, run by a real worker: every minute, as a user would set it."""
    source = label_folders(tmp_path / "source", dataset_photos, 3)
    settings = make_settings(ingest_sources=(str(source),), ingest_schedule="* * * * *")
    log = tmp_path / "worker.log"
    with App(settings, actor="test") as app:
        assert trained_photos(app) == 0  # the registry exists before the worker opens it
        worker = start_worker(
            settings.home,
            log,
            queue_url=settings.queue_url,
            ingest_sources=str(source),
            ingest_schedule="* * * * *",
        )
        try:
            # The scheduler checks the periodic tasks when it starts, then every minute.
            poll(lambda: trained_photos(app) == 6, "the scheduled ingest", [worker], timeout=180)
        finally:
            worker.send_signal(signal.SIGINT)
            code = worker.wait(timeout=120)
    text = log.read_text()
    assert code == 0, text[-2000:]
    assert f"scheduled ingest of {source}: 6 added" in text


@pytest.mark.slow
def test_the_weekly_check_fires_on_saturday_midnight(make_system, fresh_photos) -> None:
    system: System = make_system()
    submit_and_approve(system, fresh_photos["dandelion"][:5] + fresh_photos["grass"][:5])
    tasks = build_tasks(system.settings)
    # The heartbeat fires every minute; the retrain check only on Saturday at midnight.
    later = tasks.huey.read_periodic(SATURDAY_MIDNIGHT.replace(hour=1))
    assert [task.name for task in later] == ["heartbeat"]
    due = [task for task in tasks.huey.read_periodic(SATURDAY_MIDNIGHT) if task.name != "heartbeat"]
    assert [task.name for task in due] == ["retrain_check"]

    outcome = tasks.huey.execute(due[0])  # what a worker does with the scheduled task
    tasks.app.close()
    assert outcome["due"] and outcome["new_validated"] == 10
    assert outcome["candidate_version"] == list_versions(system.registry)[0].id


@pytest.mark.slow
@pytest.mark.integration
def test_two_workers_on_one_redis_retrain_once(make_system, redis_url: str, tmp_path) -> None:
    system: System = make_system(queue_url=redis_url)
    system.registry.dispose()
    logs = [tmp_path / f"worker{n}.log" for n in (1, 2)]
    # One thread each: a worker busy with one retrain cannot take the other, so the two
    # retrains meet in two processes (Redis hands a queued task to a waiting worker at once).
    workers = [
        start_worker(system.settings.home, log, threads=1, queue_url=redis_url) for log in logs
    ]
    try:
        poll(
            lambda: all(signal_handlers_installed(worker.pid) for worker in workers),
            "both workers started",
            workers,
        )
        ids = [enqueue_retrain(system.settings, actor=f"user{n}") for n in (1, 2)]
        poll(
            lambda: all(task_result(system.settings, task_id) for task_id in ids),
            "both retrains finished",
            workers,
            timeout=600,
        )
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGINT)
        codes = [worker.wait(timeout=120) for worker in workers]
    results = [task_result(system.settings, task_id) or {} for task_id in ids]
    refusals = [r["reason"] for r in results if r["reason"].startswith(STOOD_DOWN)]
    assert len(refusals) == 1, results
    assert len(list_versions(system.registry)) == 2  # the champion and one candidate
    assert codes == [0, 0], [log.read_text()[-2000:] for log in logs]
    # The worker that stood down names the other one as the holder.
    stood_down = [
        w.pid for w, log in zip(workers, logs, strict=True) if STOOD_DOWN in log.read_text()
    ]
    (holder,) = {w.pid for w in workers} - set(stood_down)
    assert len(stood_down) == 1 and f"(retrain by pid {holder} on " in refusals[0], refusals


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_the_worker_stops_on_a_signal(make_settings, tmp_path, stop: signal.Signals) -> None:
    settings = make_settings()
    log = tmp_path / "worker.log"
    worker = start_worker(settings.home, log, queue_url=settings.queue_url)
    try:
        poll(lambda: signal_handlers_installed(worker.pid), "the consumer started", [worker])
        worker.send_signal(stop)
        code = worker.wait(timeout=120)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert code == 0, log.read_text()[-2000:]
    assert "worker stopped" in log.read_text()
