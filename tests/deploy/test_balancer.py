"""HAProxy with the stack's configuration routes to ready replicas, falls back to live ones.

The real haproxy runs packaging/haproxy/haproxy.cfg with only what Docker provides swapped:
loopback ports for its listeners and two static servers for Docker's DNS. The replicas are
stand-ins that answer the edge server's health routes, so that the test can make one ready
or kill it at will; the stack test with real edge servers covers the application behind it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.services import free_port, stop_process, wait_for_port

REPO = Path(__file__).resolve().parents[2]

# A replica: alive always, ready while its flag file exists, and says its name otherwise.
REPLICA = """
import http.server, os, sys
name, port, flag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ready = os.path.exists(flag)
        status = 503 if self.path == "/health/ready" and not ready else 200
        self.send_response(status)
        self.end_headers()
        self.wfile.write(name.encode())
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


class Replica:
    def __init__(self, name: str, flag: Path) -> None:
        self.name, self.flag, self.port = name, flag, free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-c", REPLICA, name, str(self.port), str(flag)]
        )
        wait_for_port(self.port)

    def make_ready(self) -> None:
        self.flag.touch()

    def die(self) -> None:
        stop_process(self.process)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


def eventually(condition: Callable[[], bool], what: str, within: float = 30.0) -> None:
    """Health checks run every 2 s: wait, bounded, for the balancer to see a change."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"the balancer never {what}")
        time.sleep(0.5)


@pytest.fixture
def stack(
    tmp_path: Path, full_check: subprocess.CompletedProcess[str]
) -> Iterator[tuple[str, str, Replica, Replica]]:
    # The full check installed haproxy (as root) and validated this configuration.
    haproxy = shutil.which("haproxy")
    assert haproxy is not None, full_check.stdout + full_check.stderr
    replicas = [Replica(f"edge{n}", tmp_path / f"edge{n}.ready") for n in (1, 2)]
    api, monitor = free_port(), free_port()
    servers = "\n    ".join(f"server {r.name} 127.0.0.1:{r.port}" for r in replicas)
    config = (REPO / "packaging/haproxy/haproxy.cfg").read_text()
    for docker, here in (
        ("bind :8000", f"bind 127.0.0.1:{api}"),
        ("bind :8404", f"bind 127.0.0.1:{monitor}"),
        ("server-template edge 20 edge_server:8000", servers),
    ):
        assert docker in config, f"the balancer's config no longer has {docker!r}"
        config = config.replace(docker, here)
    (tmp_path / "haproxy.cfg").write_text(config)
    balancer = subprocess.Popen(
        [haproxy, "-db", "-f", str(tmp_path / "haproxy.cfg")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(api)
        yield f"http://127.0.0.1:{api}/predict", f"http://127.0.0.1:{monitor}/healthz", *replicas
    finally:
        stop_process(balancer)
        for replica in replicas:
            replica.die()


def answered_by(url: str, count: int = 8) -> set[str]:
    return {
        body if status == 200 else f"status {status}"
        for status, body in (get(url) for _ in range(count))
    }


def test_ready_replicas_take_the_traffic_and_live_ones_stand_in(
    stack: tuple[str, str, Replica, Replica],
) -> None:
    api, healthz, edge1, edge2 = stack
    # No replica is ready (a fresh stack): the live ones answer.
    eventually(lambda: answered_by(api) == {"edge1", "edge2"}, "spread requests over live replicas")
    assert get(healthz)[0] == 200

    edge1.make_ready()
    eventually(lambda: answered_by(api) == {"edge1"}, "sent everything to the ready replica")

    # The ready replica dies: the balancer routes around it, to the live one.
    edge1.die()
    eventually(lambda: answered_by(api) == {"edge2"}, "routed around the dead replica")

    edge2.die()
    eventually(lambda: get(healthz)[0] == 503, "reported that no replica lives")
