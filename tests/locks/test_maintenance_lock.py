"""The maintenance lock on both registries: one holder at a time, its identity readable, and
released by the operating system or the database the moment its holder is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import LockHeld
from core.locks import lock_holder, maintenance_lock
from core.registry import Registry
from tests.conftest import REPO_ROOT

HOLD = """
import sys, time
from core.locks import maintenance_lock
from core.registry import Registry
with maintenance_lock(Registry(sys.argv[1]), "retrain"):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def registry(registry_url: str) -> Iterator[Registry]:
    registry = Registry(registry_url)
    yield registry
    registry.dispose()


def hold_in_child(url: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, url],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    return child


def wait_until_free(registry: Registry, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while lock_holder(registry) is not None:
        assert time.monotonic() < deadline, "the lock outlived its killed holder"
        time.sleep(0.05)


def test_one_holder_at_a_time_and_it_says_who(registry: Registry) -> None:
    assert lock_holder(registry) is None
    with maintenance_lock(registry, "repair") as me:
        assert me.pid == os.getpid() and me.purpose == "repair"
        holder = lock_holder(registry)
        assert holder is not None and (holder.pid, holder.purpose) == (os.getpid(), "repair")
        with (
            pytest.raises(LockHeld, match=rf"repair by pid {os.getpid()}"),
            maintenance_lock(registry, "retrain"),
        ):
            pass
    assert lock_holder(registry) is None
    with maintenance_lock(registry, "retrain"):  # free again after a normal release
        pass


def test_a_killed_holder_leaves_no_lock(registry: Registry) -> None:
    child = hold_in_child(registry.url)
    try:
        holder = lock_holder(registry)
        assert holder is not None and (holder.pid, holder.purpose) == (child.pid, "retrain")
        with (
            pytest.raises(LockHeld, match=f"retrain by pid {child.pid}"),
            maintenance_lock(registry, "retrain"),
        ):
            pass
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        wait_until_free(registry)
        with maintenance_lock(registry, "retrain") as me:  # no flag, no restart
            assert me.pid == os.getpid()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_the_file_lock_lives_beside_the_embedded_registry(tmp_path: Path) -> None:
    registry = Registry(f"sqlite:///{tmp_path / 'home' / 'registry.db'}")
    with maintenance_lock(registry, "re-embed"):
        assert (tmp_path / "home" / "maintenance.lock").is_file()
    registry.dispose()
