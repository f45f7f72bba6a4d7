"""Fixtures for the runtime tests: the model tests' trained home, and child processes in
which torch cannot be imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.conftest import REPO_ROOT
from tests.model.conftest import embedded_home, trained  # noqa: F401  (shared fixtures)

# Installed first on sys.meta_path by sitecustomize: `import torch` (or timm, which needs it)
# fails as on a machine without them, in the child and in every process it starts.
BLOCKER = """
import sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "timm", "torchvision"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
        return None

sys.meta_path.insert(0, NoTorch())
"""


@pytest.fixture(scope="session")
def torchless_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a child process that cannot import torch."""
    folder = tmp_path_factory.mktemp("no-torch")
    (folder / "sitecustomize.py").write_text(BLOCKER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLASSIFI_")}
    env.update(
        PYTHONPATH=os.pathsep.join((str(folder), str(REPO_ROOT))),
        HF_HUB_OFFLINE="1",
        MLFLOW_DISABLE_TELEMETRY="true",
    )
    return env


@pytest.fixture
def run_torchless(torchless_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run Python ``code`` (with ``ARGS`` bound to the JSON of ``args``) without torch."""

    def run(code: str, args: object = None, **env: str) -> subprocess.CompletedProcess[str]:
        program = f"import json, sys\nARGS = json.loads({json.dumps(json.dumps(args))})\n{code}"
        return subprocess.run(
            [sys.executable, "-c", program],
            env={**torchless_env, **env},
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )

    return run
