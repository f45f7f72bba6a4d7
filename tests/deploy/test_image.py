"""The image's Dockerfile, run natively step by step where no Docker engine runs: its
export step writes the folder its environment points the application at, and its user is
the one the Kubernetes manifests run as."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from core.config import load_settings
from core.model.backbones import backbone_module
from core.model.runtimes.files import latest_export
from tests.image import ImageRuntimes, instructions

REPO = Path(__file__).resolve().parents[2]


def test_the_image_runs_as_the_manifests_user() -> None:
    (user,) = [args for instruction, args in instructions() if instruction == "USER"]
    created = [args for instruction, args in instructions() if "useradd" in args]
    assert created and f"--uid {user}" in created[0]
    for manifest in ("edge-server.yaml", "worker.yaml"):
        documents = yaml.safe_load_all((REPO / "packaging/kubernetes/base" / manifest).read_text())
        (deployment,) = [doc for doc in documents if doc["kind"] == "Deployment"]
        security = deployment["spec"]["template"]["spec"]["securityContext"]
        assert security["runAsUser"] == int(user) and security["runAsNonRoot"], manifest


@pytest.mark.slow
def test_the_export_step_fills_the_folder_the_image_searches(
    image_runtimes: ImageRuntimes, tmp_path: Path
) -> None:
    assert not (image_runtimes.build_tmp / "export-home").exists()  # the scratch home is gone

    environ = {
        "CLASSIFI_HOME": str(tmp_path / "data"),
        "CLASSIFI_RUNTIME_SEARCH_PATH": str(image_runtimes.folder),
    }
    settings = load_settings(environ)  # the image's environment
    export = latest_export(settings, "efficientnet_lite0")
    assert export is not None and export.onnx.parent == image_runtimes.folder
    lite0 = backbone_module("efficientnet_lite0").PREPROCESSING
    assert export.record["preprocessing"] == lite0.as_dict()
