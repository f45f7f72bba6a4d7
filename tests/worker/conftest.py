"""The worker tests reuse the learning-loop installations (a trained champion to copy), and
start real ``classifi worker`` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.loop.conftest import dataset_vectors, fresh_photos, make_system, trained_home
from worker.tasks import WorkerTasks

__all__ = ["dataset_vectors", "fresh_photos", "make_system", "trained_home"]

REPO_ROOT = Path(__file__).resolve().parents[2]
#: A valid schedule that never fires (February 31st), so no retrain check runs uninvited.
NEVER = "0 0 31 2 *"


def start_worker(
    home: Path, log: Path, *, threads: int = 2, **settings: str
) -> subprocess.Popen[bytes]:
    """``classifi worker`` on ``home`` with ``threads`` worker threads, its log in ``log``;
    ``settings`` as CLASSIFI_* variables."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CLASSIFI_")}
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "CLASSIFI_HOME": str(home),
            "CLASSIFI_BACKBONE": "efficientnet_lite0",
            "CLASSIFI_RETRAIN_SCHEDULE": NEVER,
            # Off unless a test asks: two workers on one machine cannot share a port.
            "CLASSIFI_WORKER_METRICS_PORT": "0",
            **{f"CLASSIFI_{key.upper()}": value for key, value in settings.items()},
        }
    )
    return subprocess.Popen(
        [sys.executable, "-m", "classifi", "worker", "--workers", str(threads)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )


def poll(
    done: Callable[[], bool],
    what: str,
    workers: list[subprocess.Popen[bytes]],
    timeout: float = 300,
) -> None:
    """Wait until ``done()``, at most ``timeout`` s; fail at once if a worker exits."""
    deadline = time.monotonic() + timeout
    while not done():
        if any(worker.poll() is not None for worker in workers):
            raise RuntimeError(f"a worker exited before {what} (see its log)")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.2)


def run_next_task(tasks: WorkerTasks) -> object:
    """What a consumer's worker does with the next queued task, here in this process."""
    task = tasks.huey.dequeue()
    assert task is not None, "no task was queued"
    return tasks.huey.execute(task)


def signal_handlers_installed(pid: int) -> bool:
    """The consumer catches SIGTERM once it has installed its handlers (Python does not)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:"))[7:], 16)
    return bool(caught & (1 << (signal.SIGTERM - 1)))
