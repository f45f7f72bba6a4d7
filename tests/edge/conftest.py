"""Fixtures for the edge server: a home with a trained champion, apps and real servers.

The 340 shared photos are ingested and two models trained once per session (EfficientNet-Lite0,
the offline pretrained backbone): version 1 is the champion, version 2 a candidate trained on
fewer photos, for the swap tests. Each test that changes state works on its own copy.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from core.config import Settings
from core.model.backbones import EFFICIENTNET_LITE0
from edge_server.app import create_app
from edge_server.services import Services
from tests.edge.openapi_check import DocumentedClient
from tests.homes import edge_settings
from tests.services import free_port

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

CLASSIFI = Path(sys.executable).with_name("classifi")
GUNICORN = Path(sys.executable).with_name("gunicorn")


def copy_home(edge_home: Path, destination: Path) -> Path:
    shutil.copytree(edge_home, destination)
    return destination


@dataclass
class EdgeApp:
    app: Flask
    services: Services
    token: str

    @property
    def settings(self) -> Settings:
        return self.services.settings

    def client(self) -> FlaskClient:
        return self.app.test_client()

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def documented(app: Flask) -> Flask:
    """``app`` whose test clients check every answer against the OpenAPI document."""
    app.test_client_class = DocumentedClient
    return app


def build_app(home: Path, **overrides: Any) -> EdgeApp:
    services = Services.build(edge_settings(home, **overrides))
    services.load_model()
    token = services.app.reset_admin_token()
    return EdgeApp(documented(create_app(services=services)), services, token)


@pytest.fixture
def make_app(tmp_path: Path, edge_home: Path) -> Iterator[Callable[..., EdgeApp]]:
    """A fresh copy of the trained home served by an app built with these settings."""
    built: list[EdgeApp] = []

    def make(**overrides: Any) -> EdgeApp:
        home = copy_home(edge_home, tmp_path / f"home{len(built)}")
        built.append(build_app(home, **overrides))
        return built[-1]

    yield make
    for edge in built:
        edge.services.close()


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, edge_home: Path) -> Iterator[EdgeApp]:
    """One app per test module on its own copy of the trained home."""
    home = copy_home(edge_home, tmp_path_factory.mktemp("edge-app") / "home")
    built = build_app(home)
    yield built
    built.services.close()


@pytest.fixture
def client(edge: EdgeApp) -> FlaskClient:
    return edge.client()


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]
    home: Path
    token: str
    log: Path
    #: The key a first start off loopback printed for "first-device", if it made one.
    device_key: str | None = None

    def stop(self) -> None:
        """Stop the server and its workers: the whole process group it was started in.

        Stopping only the master is not enough: after SIGTERM a gunicorn worker keeps serving
        its open keep-alive connections for a while, even once its master is gone.
        """
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


class PortTaken(RuntimeError):
    """Another process bound the port between choosing it and the server's start."""


def on_a_port(start: Callable[[int], LiveServer], port: int | None = None) -> LiveServer:
    """``start(port)``; without ``port`` on a free one, chosen again if another process took
    it before the server bound it. With ``port`` a taken port raises :class:`PortTaken`."""
    for _ in range(3 if port is None else 1):
        try:
            return start(port or free_port())
        except PortTaken:
            if port is not None:
                raise
    raise PortTaken("three free ports in a row were taken before the server bound them")


def start_server(
    home: Path, *args: str, port: int | None = None, env: dict[str, str] | None = None
) -> LiveServer:
    """``classifi serve`` in a subprocess on 127.0.0.1 (see :func:`on_a_port`), waited on
    until it is ready."""

    def start(chosen: int) -> LiveServer:
        return launch(home, [str(CLASSIFI), "serve", "--port", str(chosen), *args], chosen, env)

    return on_a_port(start, port)


def start_gunicorn(
    home: Path, *args: str, env: dict[str, str] | None = None, wait_for: str = "/health/ready"
) -> LiveServer:
    """A plain ``gunicorn "edge_server.wsgi:create_app()"``, settings from the environment."""

    def start(port: int) -> LiveServer:
        command = [str(GUNICORN), "--bind", f"127.0.0.1:{port}", "--no-control-socket", *args]
        return launch(home, [*command, "edge_server.wsgi:create_app()"], port, env, wait_for)

    return on_a_port(start)


def launch(
    home: Path,
    command: list[str],
    port: int,
    env: dict[str, str] | None,
    wait_for: str = "/health/ready",
) -> LiveServer:
    """Run ``command`` serving ``home`` on ``port`` until ``wait_for`` answers 200; with the
    admin token it printed."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CLASSIFI_") and key != "PROMETHEUS_MULTIPROC_DIR"
    }
    environment |= {
        "CLASSIFI_HOME": str(home),
        "CLASSIFI_BACKBONE": EFFICIENTNET_LITE0,
        "HF_HUB_OFFLINE": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        **(env or {}),
    }
    log = home.parent / f"serve-{port}.log"
    out = home.parent / f"serve-{port}.out"
    with log.open("wb") as stderr, out.open("wb") as stdout:
        process = subprocess.Popen(
            command,
            env=environment,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,  # its own process group, which stop() ends as a whole
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300  # workers import torch and load the model
    while True:
        if process.poll() is not None:
            said = log.read_text()
            if "Connection in use" in said:
                raise PortTaken(f"port {port} was taken:\n{said}")
            raise RuntimeError(f"{command[0]} exited with {process.returncode}:\n{said}")
        try:
            if requests.get(url + wait_for, timeout=5).status_code == 200:
                break
        except (requests.ConnectionError, requests.Timeout):
            pass
        if time.monotonic() > deadline:
            LiveServer(url, process, home, "", log).stop()
            raise TimeoutError(f"{command[0]} was not ready in 300 s:\n{log.read_text()}")
        time.sleep(0.2)
    printed = out.read_text().splitlines()
    token = announced(printed, "A new admin token was generated")
    assert token is not None, printed  # every home served here is new to serving
    return LiveServer(
        url, process, home, token, log, device_key=announced(printed, "A device key for")
    )


def announced(printed: list[str], notice: str) -> str | None:
    """The secret printed under ``notice``: at most once, however many workers started."""
    lines = [index for index, line in enumerate(printed) if line.startswith(notice)]
    assert len(lines) <= 1, printed
    return printed[lines[0] + 1].strip() if lines else None


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory, edge_home: Path) -> Iterator[LiveServer]:
    """A real ``classifi serve --workers 2`` on a copy of the trained home."""
    home = copy_home(edge_home, tmp_path_factory.mktemp("live") / "home")
    # Its own TMPDIR, so the tests can see the metrics files each worker writes.
    tmp = home.parent / "tmp"
    tmp.mkdir()
    server = start_server(home, "--workers", "2", env={"TMPDIR": str(tmp)})
    yield server
    server.stop()
