"""torch's libraries are loaded by a GIL-free ``dlopen`` before its first import in the app.

Checked in a fresh interpreter: torch is already imported in the test process. Whether the GUI
stays responsive meanwhile is measured by bench/desktop_responsiveness.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
from pathlib import Path
from desktop import torch_preload

seen = []  # per preload: was libtorch mapped while torch was not imported yet?
original = torch_preload.preload_torch_libraries

def watched():
    original()
    mapped = "libtorch_cpu" in Path("/proc/self/maps").read_text()
    seen.append(mapped and "torch" not in sys.modules)

torch_preload.preload_torch_libraries = watched
torch_preload.install()
torch_preload.install()  # a second call (a second QApplication) adds nothing
import torch

hooks = [f for f in sys.meta_path if isinstance(f, torch_preload._PreloadBeforeTorch)]
print(json.dumps({"seen": seen, "hooks": len(hooks), "sum": torch.ones(3).sum().item()}))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/maps")
def test_libtorch_is_loaded_before_the_first_import_of_torch() -> None:
    answer = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout) == {"seen": [True], "hooks": 0, "sum": 3.0}
