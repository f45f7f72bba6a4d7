"""scripts/check_deploy.sh passes on the repository's files and fails on broken copies."""

from __future__ import annotations

import copy
import importlib.util
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import check_deploy

REPO = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (REPO / "docker-compose.yaml").read_text()


@pytest.fixture(scope="module")
def checker(full_check: subprocess.CompletedProcess[str]) -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_deploy", REPO / "scripts/check_deploy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_deployment_files_pass_every_check(
    full_check: subprocess.CompletedProcess[str],
) -> None:
    assert full_check.returncode == 0, full_check.stdout + full_check.stderr
    for section in ("compose:", "kubernetes: overlays/in-cluster", "monitoring:", "balancer:"):
        assert f"ok   {section}" in full_check.stdout
    assert "FAIL" not in full_check.stdout


REQUIRED = "${POSTGRES_PASSWORD:?set it in .env (bash scripts/generate_env.sh)}"


@pytest.mark.parametrize(
    ("original", "broken", "reported"),
    [
        (
            f"POSTGRES_PASSWORD: {REQUIRED}",
            "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:-classifi}",
            "${POSTGRES_PASSWORD} must be required",
        ),
        (
            'GF_USERS_ALLOW_SIGN_UP: "false"',
            "GF_SECURITY_SECRET_KEY: changeme",
            "GF_SECURITY_SECRET_KEY is written in the file",
        ),
        (
            'ports: ["127.0.0.1:9090:9090"]',
            'ports: ["9090:9090"]',
            "prometheus publishes '9090:9090' beyond 127.0.0.1",
        ),
        (
            "mlflow-database: {condition: service_completed_successfully}",
            "mlflow-database: {condition: service_started}",
            "mlflow waits for mlflow-database with 'service_started'",
        ),
        (
            "restart: unless-stopped",
            "restarts: unless-stopped",
            "services.postgres: Unevaluated properties are not allowed ('restarts' was unexpected)",
        ),
    ],
    ids=["secret-default", "secret-written", "public-port", "service-started", "schema"],
)
def test_a_broken_compose_file_fails(
    checker: ModuleType, tmp_path: Path, original: str, broken: str, reported: str
) -> None:
    assert original in COMPOSE_TEXT
    copy_file = tmp_path / "docker-compose.yaml"
    copy_file.write_text(COMPOSE_TEXT.replace(original, broken, 1))
    result = check_deploy("compose", "--compose", str(copy_file))
    assert result.returncode == 1, result.stdout
    assert "FAIL compose" in result.stdout and reported in result.stdout


def test_a_service_without_healthcheck_fails(checker: ModuleType) -> None:
    compose = yaml.safe_load(COMPOSE_TEXT)
    del compose["services"]["worker"]["healthcheck"]
    assert checker.compose_rule_problems(compose) == ["worker has no healthcheck"]


def test_a_fixed_port_or_name_stops_scaling(checker: ModuleType) -> None:
    compose = yaml.safe_load(COMPOSE_TEXT)
    compose["services"]["edge_server"]["ports"] = ["127.0.0.1:8000:8000"]
    assert checker.compose_rule_problems(compose) == [
        "edge_server must scale: no container_name and no host port"
    ]


@pytest.fixture(scope="module")
def in_cluster(checker: ModuleType) -> list[dict[str, Any]]:
    text = checker.render(REPO / "packaging/kubernetes/overlays/in-cluster")
    return [obj for obj in yaml.safe_load_all(text) if obj]


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def test_the_rendered_manifests_follow_the_rules(
    checker: ModuleType, in_cluster: list[dict[str, Any]]
) -> None:
    assert checker.kubernetes_rule_problems(in_cluster) == []
    kinds = {(o["kind"], o["metadata"]["name"]) for o in in_cluster}
    assert {
        ("Deployment", "edge-server"),
        ("Deployment", "worker"),
        ("PodDisruptionBudget", "edge-server"),
        ("HorizontalPodAutoscaler", "edge-server"),
        ("StatefulSet", "postgres"),
        ("Job", "minio-buckets"),
    } <= kinds
    assert all(o["metadata"].get("namespace") == "classifi" for o in in_cluster)


def test_a_written_secret_or_a_writable_root_fails(
    checker: ModuleType, in_cluster: list[dict[str, Any]]
) -> None:
    objects = copy.deepcopy(in_cluster)
    objects.append({"kind": "Secret", "metadata": {"name": "classifi-app"}, "data": {}})
    worker = find(objects, "Deployment", "worker")["spec"]["template"]["spec"]["containers"][0]
    worker["securityContext"]["readOnlyRootFilesystem"] = False
    worker["env"].append({"name": "REDIS_PASSWORD", "value": "hunter2"})
    edge = find(objects, "Deployment", "edge-server")["spec"]["template"]["spec"]["containers"][0]
    del edge["readinessProbe"]
    objects.remove(find(objects, "PodDisruptionBudget", "edge-server"))
    assert checker.kubernetes_rule_problems(objects) == [
        "Deployment worker container worker: set readOnlyRootFilesystem: true (mount scratch folders)",
        "Deployment worker container worker: REDIS_PASSWORD must come from a Secret",
        "Secret classifi-app is written in the manifests: reference it instead",
        "edge-server needs a readinessProbe on GET /health/ready",
        "edge-server has no PodDisruptionBudget",
    ]
