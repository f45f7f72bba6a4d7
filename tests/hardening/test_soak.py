"""The soak in a short form: several processes write one SQLite home at once (a 2-worker
``classifi serve``, ``classifi worker`` retraining every minute, the desktop's local mode in
a process of its own, and HTTP clients), with no failed request and no "database is locked".
bench/soak.py is the soak itself; it exits non-zero on either, or when a process dies."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.edge.conftest import copy_home

pytestmark = pytest.mark.slow


def test_every_process_writes_one_sqlite_home_without_a_failure(
    tmp_path: Path, dataset_dir: Path, edge_home: Path
) -> None:
    home = copy_home(edge_home, tmp_path / "home")  # trained: the soak starts at once
    soak = subprocess.run(
        [sys.executable, "bench/soak.py", "--minutes", "1.5", "--clients", "8",
         "--dataset", str(dataset_dir), "--home", str(home)],
        cwd=REPO_ROOT,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # its home and logs, removed with tmp_path
        capture_output=True,
        text=True,
        timeout=540,
    )  # fmt: skip
    assert soak.returncode == 0, soak.stdout[-3000:] + soak.stderr[-3000:]
    done = {
        kind: int(ok)
        for kind, ok in re.findall(r"^(\w+(?: \w+)?) +(\d+) +\d+ +\d+ +[\d.]+$", soak.stdout, re.M)
    }
    # Every writer really wrote while the others did.
    for kind in ("predict", "submit", "review", "desktop submit", "desktop review"):
        assert done.get(kind, 0) > 0, soak.stdout
    assert "'database is locked': server log 0, worker log 0, desktop 0" in soak.stdout
    promoted = re.search(r"retrains that promoted a champion meanwhile: (\d+)", soak.stdout)
    assert promoted is not None and int(promoted[1]) >= 1, soak.stdout
