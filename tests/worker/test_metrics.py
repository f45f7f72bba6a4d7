"""The worker's Prometheus metrics: the learning loop read from the registry at each scrape,
and the scheduled jobs that failed in this process; served by a real ``classifi worker``."""

from __future__ import annotations

import signal
import socket
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from core import metrics
from core.app import App
from core.errors import ConfigError, TaskFailed
from core.loop import monitoring
from core.loop.review import reject
from core.loop.submissions import submit_photo
from core.model.versions import champion
from core.registry import AuditEntry, Photo, PhotoStatus
from tests.installation import System
from tests.loop.conftest import submit_and_approve
from tests.services import free_port
from tests.worker.conftest import poll, run_next_task, start_worker
from worker.main import serving_metrics
from worker.tasks import build_tasks, task_result

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        return parse(answer.read().decode())


def registry_truth(system: System) -> Samples:
    """What the metrics should say, counted here straight from the registry's tables."""
    with system.registry.session() as session:
        by_status = {
            status: count
            for status, count in session.execute(
                select(Photo.status, func.count()).group_by(Photo.status)
            )
        }
        audited = {
            action: count
            for action, count in session.execute(
                select(AuditEntry.action, func.count()).group_by(AuditEntry.action)
            )
        }
        last_check = session.scalar(
            select(func.max(AuditEntry.at)).where(AuditEntry.action.in_(monitoring.RAN))
        )
    current = champion(system.registry)
    assert current is not None and current.promoted_at is not None and last_check is not None
    truth: Samples = {
        ("classifi_photos", (("status", status.value),)): by_status.get(status, 0)
        for status in PhotoStatus
    }
    for outcome, action in (
        ("not_due", monitoring.NOT_DUE),
        ("failed", monitoring.FAILED),
        ("stood_down", monitoring.STOOD_DOWN),
    ):
        truth["classifi_retrain_runs_total", (("outcome", outcome),)] = audited.get(action, 0)
    for outcome in ("promoted", "refused"):  # no retrain run has finished in these tests
        truth["classifi_retrain_runs_total", (("outcome", outcome),)] = 0
    truth["classifi_champion_accuracy", ()] = current.metrics["accuracy"]
    truth["classifi_champion_promoted_timestamp_seconds", ()] = utc(current.promoted_at)
    truth["classifi_last_retrain_check_timestamp_seconds", ()] = utc(last_check)
    return truth


def utc(moment: datetime) -> float:
    return moment.replace(tzinfo=moment.tzinfo or UTC).timestamp()


def loop_part(samples: Samples) -> Samples:
    return {key: value for key, value in samples.items() if not key[0].startswith("classifi_sch")}


def make_loop(system: System, fresh_photos: dict[str, list[Path]]) -> int:
    """Two validated photos, two pending, one rejected; the id of a validated one."""
    validated = submit_and_approve(
        system, fresh_photos["dandelion"][:1] + fresh_photos["grass"][:1]
    )
    pending = [
        submit_photo(system.settings, system.registry, system.store, path.read_bytes(), "grass")
        for path in fresh_photos["grass"][1:4]
    ]
    reject(system.settings, system.registry, system.store, [pending[0].photo_id], actor="admin")
    return validated[0].photo_id


@pytest.mark.slow
def test_a_worker_process_exports_the_registry_truth(
    make_system: Callable[..., System], fresh_photos: dict[str, list[Path]], tmp_path: Path
) -> None:
    system = make_system()
    lost = make_loop(system, fresh_photos)
    port = free_port()
    log = tmp_path / "worker.log"
    with App(system.settings, actor="test") as app:
        assert not app.retrain_check().due  # 2 of 10 new photos: not due
        with app.maintenance("a test"):  # the worker's first scheduled check stands down
            worker = start_worker(
                system.settings.home,
                log,
                queue_url=system.settings.queue_url,
                worker_metrics_port=str(port),
                retrain_schedule="* * * * *",
                retrain_min_new="1",
            )
            try:
                poll(
                    lambda: app.loop_snapshot().retrain_runs["stood_down"] == 1,
                    "the scheduled check stood down",
                    [worker],
                )
            except BaseException:
                worker.kill()
                raise
        try:
            # A validated photo lost from the bucket: the next scheduled check fails.
            with system.registry.session() as session:
                key = session.get(Photo, lost).object_key  # type: ignore[union-attr]
            system.store.delete(key)
            failures = ("classifi_scheduled_job_failures_total", (("task", "retrain_check"),))
            poll(lambda: scrape(port).get(failures, 0) >= 1, "a failed check", [worker], 150)
            # The registry moves on at each minute's check: compare once both agree.
            poll(
                lambda: loop_part(scrape(port)) == registry_truth(system),
                "the scrape to match the registry",
                [worker],
                30,
            )
            scraped = scrape(port)
            assert (
                scraped[failures]
                == registry_truth(system)["classifi_retrain_runs_total", (("outcome", "failed"),)]
            )  # every failure so far was a scheduled check's
            assert scraped["classifi_retrain_runs_total", (("outcome", "stood_down"),)] == 1
            assert scraped["classifi_retrain_runs_total", (("outcome", "not_due"),)] == 1
            assert scraped["classifi_photos", (("status", "rejected"),)] == 1
            assert scraped["classifi_photos", (("status", "pending"),)] == 2
        finally:
            worker.send_signal(signal.SIGINT)
            code = worker.wait(timeout=120)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert f"worker metrics on http://127.0.0.1:{port}/metrics" in text


def test_only_scheduled_tasks_count_as_scheduled_failures(
    make_system: Callable[..., System], fresh_photos: dict[str, list[Path]]
) -> None:
    """An on-demand retrain that fails is a failed check, not a scheduled-job failure."""
    system = make_system(retrain_min_new=1)
    lost = make_loop(system, fresh_photos)
    with system.registry.session() as session:
        system.store.delete(session.get(Photo, lost).object_key)  # type: ignore[union-attr]
    tasks = build_tasks(system.settings)
    failures = metrics.SCHEDULED_JOB_FAILURES.labels(task="retrain_check")
    before = failures._value.get()
    queued = tasks.retrain(actor="someone")
    run_next_task(tasks)  # what a worker does: the error is logged and kept as the result
    with pytest.raises(TaskFailed, match="does not exist"):
        task_result(system.settings, str(queued.id))
    assert failures._value.get() == before
    tasks.huey.execute(tasks.huey.read_periodic(datetime(2026, 11, 28, 0, 0))[0])
    assert failures._value.get() == before + 1
    served = parse(generate_latest(metrics.worker_registry(tasks.app.loop_snapshot)).decode())
    assert served["classifi_retrain_runs_total", (("outcome", "failed"),)] == 2
    assert loop_part(served) == registry_truth(system)
    tasks.app.close()


def test_no_champion_no_champion_samples(make_settings) -> None:
    with App(make_settings(), actor="test") as app:
        served = parse(generate_latest(metrics.worker_registry(app.loop_snapshot)).decode())
    names = {name for name, _ in served}
    assert "classifi_champion_accuracy" not in names
    assert "classifi_last_retrain_check_timestamp_seconds" not in names
    assert served["classifi_photos", (("status", "pending"),)] == 0
    assert served["classifi_retrain_runs_total", (("outcome", "promoted"),)] == 0


def test_port_zero_serves_nothing_and_a_taken_port_says_so(make_settings) -> None:
    with App(make_settings(worker_metrics_port=0), actor="test") as app, serving_metrics(app):
        pass  # nothing listens, nothing fails
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings: dict[str, Any] = {"worker_metrics_port": port}
        with (
            App(make_settings(**settings), actor="test") as app,
            pytest.raises(ConfigError, match=rf"127.0.0.1:{port}.*worker_metrics_port"),
            serving_metrics(app),
        ):
            pass
