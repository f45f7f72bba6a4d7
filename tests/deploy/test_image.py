"""The image's Dockerfile, run natively step by step where no Docker engine runs: its
export step writes the folder its environment points the application at, and its user is
the one the Kubernetes manifests run as."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core.config import load_settings
from core.model.backbones import backbone_module
from core.model.runtimes.files import latest_export

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "packaging" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(instruction, arguments) in order, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in joined.splitlines()]
    return [
        (line.split(None, 1)[0], line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


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
def test_the_export_step_fills_the_folder_the_image_searches(tmp_path: Path) -> None:
    (step,) = [args for instruction, args in instructions() if "export --format runtimes" in args]
    (search_path,) = [
        args.split("=", 1)[1]
        for instruction, args in instructions()
        if instruction == "ENV" and args.startswith("CLASSIFI_RUNTIME_SEARCH_PATH=")
    ]
    image_root = tmp_path / "image"  # the image's / for this run
    command = step.replace("/tmp/", f"{tmp_path}/").replace("/opt/", f"{image_root}/opt/")
    done = subprocess.run(
        command.replace("classifi ", f"{shlex.quote(sys.executable)} -m classifi ", 1),
        shell=True,  # the Dockerfile's RUN line as the image's shell runs it
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "export-home").exists()  # the build's scratch home is not kept

    shipped = image_root / search_path.lstrip("/")
    environ = {
        "CLASSIFI_HOME": str(tmp_path / "data"),
        "CLASSIFI_RUNTIME_SEARCH_PATH": str(shipped),
    }
    settings = load_settings(environ)  # the image's environment
    export = latest_export(settings, "efficientnet_lite0")
    assert export is not None and export.onnx.parent == shipped
    lite0 = backbone_module("efficientnet_lite0").PREPROCESSING
    assert export.record["preprocessing"] == lite0.as_dict()
