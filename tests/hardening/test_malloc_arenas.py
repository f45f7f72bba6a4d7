"""The long-running processes cap glibc's malloc arenas (core.memory): counted in a child
process, from glibc's own report of its heaps, after eight threads have allocated. The
desktop app caps them where each of its processes starts (``create_application``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core.memory import MALLOC_ARENAS, _glibc

pytestmark = pytest.mark.skipif(not _glibc(), reason="malloc arenas are glibc's")

REPO_ROOT = Path(__file__).resolve().parents[2]
THREADS = 8

CHILD = textwrap.dedent(
    """
    import ctypes, sys, threading
    from core.memory import limit_malloc_arenas

    if sys.argv[1] == "capped":
        limit_malloc_arenas()
    elif sys.argv[1] == "desktop":
        from desktop.app import create_application

        create_application(["classifi-desktop"])
    allocated, done = threading.Barrier({threads} + 1), threading.Event()

    def allocate():  # a thread's first malloc takes an arena for it
        blocks = [bytearray(4096) for _ in range(1000)]
        allocated.wait()
        done.wait()

    threads = [threading.Thread(target=allocate) for _ in range({threads})]
    for thread in threads:
        thread.start()
    allocated.wait()
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    report = ctypes.c_void_p(libc.fopen(sys.argv[2].encode(), b"w"))
    libc.malloc_info(0, report)
    libc.fclose(report)
    done.set()
    """
).format(threads=THREADS)


def heaps(mode: str, tmp_path: Path, **env: str) -> int:
    report = tmp_path / f"{mode}.xml"
    environment = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(report)],
        env={**environment, "PYTHONPATH": str(REPO_ROOT), "QT_QPA_PLATFORM": "offscreen", **env},
        check=True,
        timeout=60,
    )
    return report.read_text().count("<heap nr=")


def test_the_cap_holds_many_threads_to_few_arenas(tmp_path: Path) -> None:
    assert heaps("default", tmp_path) > MALLOC_ARENAS + 1  # what the cap is for
    assert heaps("capped", tmp_path) <= MALLOC_ARENAS


def test_an_explicit_malloc_arena_max_wins(tmp_path: Path) -> None:
    assert heaps("capped", tmp_path, MALLOC_ARENA_MAX="4") > MALLOC_ARENAS


def test_the_desktop_app_caps_them_as_it_starts(tmp_path: Path) -> None:
    assert heaps("desktop", tmp_path) <= MALLOC_ARENAS
