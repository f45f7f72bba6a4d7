"""Choosing the runtime: the fastest that keeps parity, measured once per machine and
recorded in the home, restricted by the setting, and shown by status with its reason."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.app import App
from core.config import Settings
from core.errors import ConfigError
from core.model.backbones import EFFICIENTNET_LITE0, get_backbone, network_of, runtime_selection
from core.model.head import LinearHead
from core.model.runtimes import selection as selection_module
from core.model.runtimes.files import Export
from core.model.runtimes.selection import Candidate, Selection, select
from tests.conftest import REPO_ROOT
from tests.model.conftest import TrainedSystem

BLAS_THREADS = """
import json, sys
from threadpoolctl import threadpool_info
from core.config import load_settings
from core.model.backbones import EFFICIENTNET_LITE0, get_backbone

def blas_threads():
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

before = blas_threads()
get_backbone(EFFICIENTNET_LITE0, load_settings({}, overrides={"home": sys.argv[1]}))
print(json.dumps({"before": before, "after": blas_threads()}))
"""


@pytest.mark.slow
def test_status_names_the_runtime_in_use_and_why(trained: TrainedSystem) -> None:
    backbone = get_backbone(EFFICIENTNET_LITE0, trained.settings)
    with App(trained.settings, actor="test") as app:
        report = app.status()["runtime_in_use"]
    assert report["setting"] == "auto"
    assert report["runtime"] == backbone.kind
    assert (
        "the fastest of" in report["reason"] and "keeps parity with torch fp32" in report["reason"]
    )
    assert re.search(r"on 32 (photos|synthetic) probe images", report["reason"])
    assert len(report["candidates"]) >= 2 and all(
        "img/s" in c or "failed" in c for c in report["candidates"]
    )


def no_measuring(*_args: Any) -> Any:
    raise AssertionError("measured again")


@pytest.mark.slow
def test_a_recorded_measurement_is_reused_until_the_machine_changes(
    trained: TrainedSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = runtime_selection(EFFICIENTNET_LITE0, trained.settings)
    monkeypatch.setattr(selection_module, "measure", no_measuring)
    network = network_of(recorded.export, trained.settings)
    again = select(network, recorded.export)
    assert again.candidates == recorded.candidates and again.measured_at == recorded.measured_at

    monkeypatch.setattr(selection_module, "machine", lambda threads: {"cpu": "another one"})
    with pytest.raises(AssertionError, match="measured again"):
        select(network, recorded.export)


@pytest.mark.slow
def test_each_runtime_setting_keeps_its_own_measurement(
    trained: TrainedSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trying runtime = onnxruntime and going back to auto measures nothing again."""
    auto = runtime_selection(EFFICIENTNET_LITE0, trained.settings)
    only_onnxruntime = trained.settings.model_copy(update={"runtime": "onnxruntime"})
    measured = select(network_of(auto.export, only_onnxruntime), auto.export)
    monkeypatch.setattr(selection_module, "measure", no_measuring)
    again = select(network_of(auto.export, trained.settings), auto.export)
    assert again.candidates == auto.candidates and again.measured_at == auto.measured_at
    assert select(network_of(auto.export, only_onnxruntime), auto.export).candidates == (
        measured.candidates
    )


@pytest.mark.slow
def test_a_recorded_measurement_answers_only_the_probe_it_was_made_on(
    trained: TrainedSystem, tmp_path: Path
) -> None:
    """A shipped export may have the home's key but other probe photos: the home's record
    of its own export is no measurement of that one."""
    export = runtime_selection(EFFICIENTNET_LITE0, trained.settings).export
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for path in (export.onnx, export.sidecar):
        shutil.copy(path, shipped / path.name)
    with np.load(export.probe_path) as probe:
        photos = {name: probe[name][::-1] for name in probe.files}  # the photos in other order
    np.savez(shipped / export.probe_path.name, **photos)
    other = Export(shipped / export.onnx.name, export.record)

    assert selection_module.recorded(network_of(export, trained.settings), export) is not None
    assert selection_module.recorded(network_of(other, trained.settings), other) is None


@pytest.mark.slow
def test_the_setting_restricts_the_runtimes(
    make_settings: Callable[..., Settings], trained: TrainedSystem
) -> None:
    settings = make_settings(backbone=EFFICIENTNET_LITE0, runtime="onnxruntime")
    selection = runtime_selection(EFFICIENTNET_LITE0, settings)
    assert {c.runtime for c in selection.candidates} == {"onnxruntime"}
    assert get_backbone(EFFICIENTNET_LITE0, settings).runtime == "onnxruntime"
    with pytest.raises(ConfigError, match="runtime"):
        make_settings(runtime="tensorrt")


def test_a_model_whose_answers_would_change_gets_the_next_runtime() -> None:
    reference = np.array([[1.0, 0.02], [1.0, -0.5], [1.0, 0.5]])
    flipped = reference + np.array([0.0, -0.03])  # the first photo crosses the boundary
    head = LinearHead(np.array([[0.0, 1.0]]), np.zeros(1), 2)  # grass when the 2nd value > 0
    fast, slow = (
        Candidate("openvino", "bf16", 0.9995, 300.0),
        Candidate("onnxruntime", "fp32", 1.0, 100.0),
    )
    chosen = Selection(
        "auto",
        Export(Path("net.onnx"), {"backbone": "test", "probe": {"photos": 3, "source": "photos"}}),
        None,  # type: ignore[arg-type]  # no engine is built here
        [fast, slow],
        reference,
        {fast.kind: flipped, slow.kind: reference},
        "now",
    )
    assert chosen.choose()[0] == fast  # the fastest, for embedding
    candidate, reason = chosen.choose(head)
    assert candidate == slow and "agree with torch fp32's on only 66.7%" in reason


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="numpy's BLAS has one thread anyway")
def test_numpy_blas_leaves_the_cores_to_the_runtime(trained: TrainedSystem) -> None:
    """Its idle threads spin after each product and slowed classification by a third."""
    done = subprocess.run(
        [sys.executable, "-c", BLAS_THREADS, str(trained.settings.home)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    threads = json.loads(done.stdout.splitlines()[-1])
    assert threads["before"] and max(threads["before"]) > 1  # numpy's default: every core
    assert set(threads["after"]) == {1}
