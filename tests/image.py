"""The image's Dockerfile read step by step, and its export step run natively once per
session (no Docker engine runs here): the read-only folder every container predicts from."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
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


@dataclass(frozen=True)
class ImageRuntimes:
    build_tmp: Path  # the build's /tmp
    folder: Path  # the image's CLASSIFI_RUNTIME_SEARCH_PATH, under this run's stand-in for /


@pytest.fixture(scope="session")
def image_runtimes(tmp_path_factory: pytest.TempPathFactory) -> ImageRuntimes:
    """The Dockerfile's export step, run as its RUN line is, with / and /tmp in a temp dir."""
    (step,) = [args for instruction, args in instructions() if "export --format runtimes" in args]
    (search_path,) = [
        args.split("=", 1)[1]
        for instruction, args in instructions()
        if instruction == "ENV" and args.startswith("CLASSIFI_RUNTIME_SEARCH_PATH=")
    ]
    build_tmp = tmp_path_factory.mktemp("image-build")
    image_root = tmp_path_factory.mktemp("image")  # the image's / for this run
    command = step.replace("/tmp/", f"{build_tmp}/").replace("/opt/", f"{image_root}/opt/")
    build = subprocess.run(
        command.replace("classifi ", f"{shlex.quote(sys.executable)} -m classifi ", 1),
        shell=True,  # the Dockerfile's RUN line as the image's shell runs it
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr
    return ImageRuntimes(build_tmp, image_root / search_path.lstrip("/"))
