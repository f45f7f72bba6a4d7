"""core's maintenance lock as the worker and the command line meet it: a held lock makes a
queued retrain stand down and a command stop with the holder's name, and a holder killed
with SIGKILL leaves nothing behind. Real locks, real SQLite and Redis queues."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from core.app import App
from core.config import Settings
from core.errors import TaskFailed
from core.model.versions import list_versions
from tests.installation import System, run_classifi
from tests.services import free_port
from tests.worker.conftest import REPO_ROOT, run_next_task
from worker.tasks import STOOD_DOWN, build_tasks, enqueue_retrain, task_result

HOLD = """
import sys
from core.app import App
from core.config import load_settings

app = App(load_settings({}, overrides={"home": sys.argv[1]}), actor="holder")
with app.maintenance("repair"):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes stdin, or kills this process
"""


@pytest.fixture
def lock_holder() -> Iterator[Callable[[Settings], subprocess.Popen[str]]]:
    """Start a process that holds the maintenance lock of a home until it is killed."""
    started: list[subprocess.Popen[str]] = []

    def start(settings: Settings) -> subprocess.Popen[str]:
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(settings.home)],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(holder)
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        return holder

    yield start
    for holder in started:
        holder.kill()
        holder.wait()


def test_a_held_lock_stops_a_command_with_the_holders_name(settings: Settings, lock_holder) -> None:
    holder = lock_holder(settings)
    for command in (["retrain-check"], ["doctor", "--repair"]):
        refused = run_classifi(settings.home, *command)
        assert refused.returncode == 1, refused.stderr
        assert f"The maintenance lock is held (repair by pid {holder.pid} on " in refused.stderr
    checked = run_classifi(settings.home, "doctor")  # a check needs no lock, and says who holds it
    assert checked.returncode == 0, checked.stderr
    assert f"Maintenance lock held: repair by pid {holder.pid} on " in checked.stdout

    holder.send_signal(signal.SIGKILL)
    holder.wait()
    repaired = run_classifi(settings.home, "doctor", "--repair")  # nothing left to clear by hand
    assert repaired.returncode == 0, repaired.stderr
    assert "Consistent." in repaired.stdout and "Maintenance lock held" not in repaired.stdout


@pytest.mark.parametrize("queue", ["sqlite", pytest.param("redis", marks=pytest.mark.integration)])
def test_a_failed_task_raises_task_failed(make_settings, request, queue: str) -> None:
    overrides = {"queue_url": request.getfixturevalue("redis_url")} if queue == "redis" else {}
    # A registry that nobody serves: the task fails where it would in a deployment.
    down = f"postgresql+psycopg2://classifi@127.0.0.1:{free_port()}/classifi"
    settings = make_settings(registry_url=down, **overrides)
    tasks = build_tasks(settings)
    task_id = enqueue_retrain(settings, actor="test")
    run_next_task(tasks)
    with pytest.raises(TaskFailed, match=rf"Task {task_id} failed on the worker: .*127\.0\.0\.1"):
        task_result(settings, task_id)


@pytest.mark.slow
@pytest.mark.parametrize("queue", ["sqlite", pytest.param("redis", marks=pytest.mark.integration)])
def test_a_held_lock_makes_a_queued_retrain_stand_down(
    make_system, lock_holder, request, queue: str
) -> None:
    overrides = {"queue_url": request.getfixturevalue("redis_url")} if queue == "redis" else {}
    system: System = make_system(**overrides)
    tasks = build_tasks(system.settings)
    holder = lock_holder(system.settings)

    first = enqueue_retrain(system.settings, actor="test")
    run_next_task(tasks)
    outcome = task_result(system.settings, first)
    assert outcome is not None and not outcome["due"]
    assert outcome["reason"].startswith(f"{STOOD_DOWN}: The maintenance lock is held (repair ")
    assert f"by pid {holder.pid} " in outcome["reason"]
    assert len(list_versions(system.registry)) == 1

    holder.send_signal(signal.SIGKILL)  # the lock dies with its holder
    holder.wait()
    second = enqueue_retrain(system.settings, actor="test")
    run_next_task(tasks)
    tasks.app.close()
    outcome = task_result(system.settings, second)
    assert outcome is not None and outcome["due"], outcome
    assert len(list_versions(system.registry)) == 2


def test_status_names_the_holder(settings: Settings, lock_holder) -> None:
    with App(settings, actor="test") as app:
        assert app.status()["maintenance_lock"] is None
        holder = lock_holder(settings)
        assert f"repair by pid {holder.pid} on " in app.status()["maintenance_lock"]
    status = run_classifi(settings.home, "status")
    assert status.returncode == 0, status.stderr
    assert f"Maintenance lock held: repair by pid {holder.pid}" in status.stdout
