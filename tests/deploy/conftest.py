"""scripts/check_deploy.sh, run once per session: it also installs the tools these tests use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def check_deploy(*args: str) -> subprocess.CompletedProcess[str]:
    # The virtualenv running the tests is the one the script installs its tools into.
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "check_deploy.sh"), *args],
        env={**os.environ, "VENV": sys.prefix},
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="session")
def full_check() -> subprocess.CompletedProcess[str]:
    """One full run, which also installs the tools the other tests use."""
    return check_deploy()
