"""Training against a real MLflow tracking server over http://, and that server going down at
the start, in the middle and at the end of a training: no model file, no registry row and no
MLflow version are left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient

from core.errors import ModelError
from core.model.training import train_model
from core.registry import ModelVersion
from core.store import MODEL_PREFIX
from tests.installation import System
from tests.model.conftest import copy_home
from tests.services import free_port, wait_for_port

pytestmark = [pytest.mark.slow, pytest.mark.integration]
MLFLOW = Path(sys.executable).with_name("mlflow")


@dataclass
class TrackingServer:
    uri: str
    backend: str
    process: subprocess.Popen[bytes] | None = None

    def start(self, folder: Path) -> None:
        port = int(self.uri.rsplit(":", 1)[1])
        self.process = subprocess.Popen(
            [
                str(MLFLOW),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--backend-store-uri",
                self.backend,
                "--artifacts-destination",
                str(folder / "artifacts"),
                "--serve-artifacts",
                "--workers",
                "1",
            ],
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own group: stopping it stops its workers too
        )
        wait_for_port(port, timeout=120)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
        self.process = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[TrackingServer]:
    tracking = TrackingServer(
        f"http://127.0.0.1:{free_port()}", f"sqlite:///{tmp_path / 'mlflow-server.db'}"
    )
    yield tracking
    tracking.stop()


@pytest.fixture
def system_on(embedded_home: Path, tmp_path: Path) -> Callable[[str], System]:
    def build(uri: str) -> System:
        system = copy_home(embedded_home, tmp_path / "home")
        settings = system.settings.model_copy(update={"mlflow_tracking_uri": uri})
        return System(settings, system.registry, system.store)

    return build


def assert_nothing_left(system: System, server: TrackingServer, folder: Path) -> None:
    assert list(system.store.list(MODEL_PREFIX)) == []
    with system.registry.session() as session:
        assert session.query(ModelVersion).count() == 0
    server.start(folder)  # up again, on the same backend: no version was registered
    versions = MlflowClient(server.uri).search_model_versions()
    assert versions == []


def test_training_on_an_http_tracking_server(
    server: TrackingServer, system_on: Callable[[str], System], tmp_path: Path
) -> None:
    server.start(tmp_path)
    system = system_on(server.uri)
    result = train_model(system.settings, system.registry, system.store)
    client = MlflowClient(server.uri)
    assert client.get_run(result.mlflow_run_id).info.status == "FINISHED"
    alias = client.get_model_version_by_alias(system.settings.mlflow_model_name, "champion")
    assert alias.version == result.mlflow_version and result.became_champion


def test_a_server_down_at_the_start_fails_clearly(
    server: TrackingServer, system_on: Callable[[str], System], tmp_path: Path
) -> None:
    system = system_on(server.uri)  # nothing listens there yet
    with pytest.raises(ModelError, match=rf"MLflow failed .* at {server.uri}"):
        train_model(system.settings, system.registry, system.store)
    assert_nothing_left(system, server, tmp_path)


@pytest.mark.parametrize(("stage", "when"), [("train", 5), ("train", 10)])
def test_a_server_killed_during_training_leaves_nothing(
    server: TrackingServer,
    system_on: Callable[[str], System],
    tmp_path: Path,
    stage: str,
    when: int,
) -> None:
    """Killed after epoch 5 (the middle) or after the last epoch (the end, before the
    validation metrics and the model are logged)."""
    server.start(tmp_path)
    system = system_on(server.uri)

    def progress(name: str, done: int, _total: int) -> None:
        if (name, done) == (stage, when):
            server.stop()

    with pytest.raises(ModelError, match="MLflow failed"):
        train_model(system.settings, system.registry, system.store, progress=progress)
    assert_nothing_left(system, server, tmp_path)
