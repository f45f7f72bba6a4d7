"""The exported files: keyed so a stale one is never used, read without torch, and the
model export for users, whose README snippet is run exactly as written."""

from __future__ import annotations

import collections
import hashlib
import io
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from core.app import App
from core.config import Settings
from core.errors import ModelError
from core.model import artifacts, backbones
from core.model.backbones import EFFICIENTNET_LITE0, efficientnet_lite0, ensure_export
from core.model.pth import UnsafePthFile, load_pth
from core.model.runtimes import files
from core.model.runtimes.files import export_key, find_export
from tests.conftest import REPO_ROOT
from tests.model.conftest import TrainedSystem

README = REPO_ROOT / "README.md"


def test_the_key_changes_with_weights_preprocessing_opset_and_exporter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    preprocessing = efficientnet_lite0.PREPROCESSING
    base = export_key(EFFICIENTNET_LITE0, "a" * 64, preprocessing)
    assert base == export_key(EFFICIENTNET_LITE0, "a" * 64, preprocessing)
    others = {
        export_key(EFFICIENTNET_LITE0, "b" * 64, preprocessing),
        export_key(EFFICIENTNET_LITE0, "a" * 64, replace(preprocessing, size=256)),
        export_key("dinov2_vits14", "a" * 64, preprocessing),
    }
    monkeypatch.setattr(files, "OPSET", files.OPSET + 1)
    others.add(export_key(EFFICIENTNET_LITE0, "a" * 64, preprocessing))
    monkeypatch.setattr(files, "EXPORTER", files.EXPORTER + "-next")
    others.add(export_key(EFFICIENTNET_LITE0, "a" * 64, preprocessing))
    assert base not in others and len(others) == 5


@pytest.mark.slow
def test_a_stale_or_damaged_export_is_never_used(
    make_settings: Callable[..., object], tmp_path: Path
) -> None:
    settings = make_settings(backbone=EFFICIENTNET_LITE0)
    export = ensure_export(EFFICIENTNET_LITE0, settings)  # type: ignore[arg-type]
    assert export.onnx.parent == settings.home / "runtimes"  # type: ignore[attr-defined]
    assert find_export(settings, EFFICIENTNET_LITE0, export.key) == export  # type: ignore[arg-type]
    record = json.loads(export.sidecar.read_text())
    assert {record["opset"], record["exporter"], record["torch"]} == {
        files.OPSET,
        files.EXPORTER,
        torch.__version__,
    }
    assert record["export_check"]["min_cosine"] >= files.EXPORT_MIN_COSINE

    # A sidecar that names another key (weights, preprocessing, opset or exporter changed).
    stale = json.loads(export.sidecar.read_text())
    export.sidecar.write_text(json.dumps({**stale, "key": "0" * 64}))
    assert find_export(settings, EFFICIENTNET_LITE0, export.key) is None  # type: ignore[arg-type]
    export.sidecar.write_text(json.dumps(stale))

    # Bytes that are not the ones exported.
    data = bytearray(export.onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    export.onnx.write_bytes(bytes(data))
    assert find_export(settings, EFFICIENTNET_LITE0, export.key) is None  # type: ignore[arg-type]


def torch_save(value: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def test_the_torch_free_reader_reads_what_torch_save_writes() -> None:
    grid = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    value = {
        "format": 1,
        "state_dict": collections.OrderedDict(
            weight=torch.randn(1, 1280), bias=torch.tensor([0.25]), strided=grid.t()[1:, ::2]
        ),
        "ints": torch.arange(5, dtype=torch.int64),
        "flags": torch.tensor([True, False]),
        "half": torch.ones(3, dtype=torch.float16),
        "scalar": torch.tensor(3.5, dtype=torch.float64),
        "labels": ["dandelion", "grass"],
        "metrics": {"accuracy": 0.97, "per_label": {"grass": {"f1": 0.9}}, "none": None},
    }
    loaded = load_pth(torch_save(value))
    assert loaded["labels"] == value["labels"] and loaded["metrics"] == value["metrics"]
    for name, tensor in value["state_dict"].items():  # type: ignore[attr-defined]
        np.testing.assert_array_equal(loaded["state_dict"][name], tensor.numpy())
    for name in ("ints", "flags", "half", "scalar"):
        expected = value[name].numpy()  # type: ignore[attr-defined]
        assert loaded[name].dtype == expected.dtype and loaded[name].shape == expected.shape
        np.testing.assert_array_equal(loaded[name], expected)


def test_the_reader_refuses_any_other_global() -> None:
    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("echo pwned",))

    hostile = io.BytesIO()
    with zipfile.ZipFile(hostile, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"format": 1, "x": Exploit()}))
    with pytest.raises(UnsafePthFile, match=r"(posix|os)\.system"):
        load_pth(hostile.getvalue())
    with pytest.raises(ModelError, match="not a readable model"):
        artifacts.load_artifact(hostile.getvalue())
    # A whole torch module (code, not data) is refused too, as weights_only refuses it.
    with pytest.raises(UnsafePthFile, match=r"torch\.nn"):
        load_pth(torch_save(torch.nn.Linear(2, 1)))


def readme_snippet() -> str:
    section = README.read_text(encoding="utf-8").split("## Use a model in your own app")[1]
    section = section.split("\n## ")[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 1, "the README's export section has one Python snippet"
    return str(blocks[0])


@pytest.mark.slow
def test_classifi_export_onnx_and_the_readme_snippet_match_classify(
    trained: TrainedSystem,
    torchless_env: dict[str, str],
    dataset_photos: dict[str, list[Path]],
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "classifi", "--home", str(trained.settings.home), "export",
         "--format", "onnx", "--out", str(tmp_path / "export")],
        env=torchless_env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    onnx_path, sidecar_path = (Path(line) for line in done.stdout.split())
    assert onnx_path.name == "efficientnet_lite0_classifier_1.onnx"
    sidecar = json.loads(sidecar_path.read_text())
    assert sidecar["sha256"] == hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    assert sidecar["labels"] == ["dandelion", "grass"] and sidecar["version"] == 1
    assert sidecar["backbone"] == EFFICIENTNET_LITE0
    assert sidecar["metrics"]["accuracy"] == trained.first.metrics["accuracy"]
    assert {"size", "resize", "mean", "std"} <= set(sidecar["preprocessing"])

    with App(trained.settings, actor="test") as app:
        for photo in (dataset_photos["dandelion"][11], dataset_photos["grass"][11]):
            (tmp_path / "photo.jpg").unlink(missing_ok=True)
            (tmp_path / "photo.jpg").symlink_to(photo)
            ran = subprocess.run(
                [sys.executable, "-c", readme_snippet()],
                cwd=tmp_path, env=torchless_env, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            assert ran.returncode == 0, ran.stderr
            printed = json.loads(ran.stdout)
            expected = app.classify([photo.read_bytes()])[0]
            assert max(printed, key=printed.get) == expected.label  # type: ignore[union-attr]
            for label, probability in expected.probabilities.items():  # type: ignore[union-attr]
                assert printed[label] == pytest.approx(probability, abs=1e-4)


def test_export_options_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "classifi", "--home", str(tmp_path), "export", "--format", "onnx"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0 and "--format onnx needs --out DIR" in done.stderr


@pytest.mark.slow
def test_an_export_made_on_an_installation_probes_its_own_photos(
    trained: TrainedSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backbones, "_exports", {})  # nothing made earlier in this process
    home = tmp_path / "home"
    shutil.copytree(trained.settings.home, home, ignore=shutil.ignore_patterns("runtimes"))
    with App(trained.settings.model_copy(update={"home": home}), actor="test") as app:
        export = app.export_runtimes()
    assert export.onnx.parent == home / "runtimes"
    assert export.record["probe"] == {"source": "photos", "photos": files.PROBE_SIZE}
    with np.load(export.probe_path) as probe:
        assert probe["pixels"].shape == (files.PROBE_SIZE, 224, 224, 3)
        assert probe["embeddings"].shape == (files.PROBE_SIZE, 1280)


def test_a_new_home_copies_the_export_of_any_known_home_still_there(
    trained: TrainedSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backbones, "_exports", {})
    first = ensure_export(EFFICIENTNET_LITE0, trained.settings)

    def in_home(name: str) -> Settings:
        return trained.settings.model_copy(update={"home": tmp_path / name})

    ensure_export(EFFICIENTNET_LITE0, in_home("second"))
    shutil.rmtree(tmp_path / "second")  # a home deleted since: a user's old one, a test's

    def exported_again(*_args: object) -> None:
        raise AssertionError("exported again although the first home still has the files")

    monkeypatch.setattr(backbones, "export_backbone", exported_again)
    third = ensure_export(EFFICIENTNET_LITE0, in_home("third"))
    assert third.onnx.parent == tmp_path / "third" / "runtimes" and third.key == first.key
    # This machine's runtime measurement came along: the third home does not measure again.
    assert (third.onnx.parent / f"{third.stem}.auto.selection.json").is_file()
