"""Slow and idle clients against a real ``classifi serve`` (gunicorn, 4 threads, so that a
few stuck threads would show): 200 idle connections and bodies sent a byte a second do not
stop /predict answering, and the slow clients are cut off."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from edge_server.slow_clients import BODY_GRACE_S, HEADERS_WITHIN_S
from tests.edge.conftest import LiveServer, copy_home, start_server

pytestmark = pytest.mark.slow

THREADS = 4
#: What a /predict may take while the slow clients are connected: on a free thread it takes
#: well under a second; waiting for a thread a slow client held until cut would take longer.
ANSWER_WITHIN_S = 5.0
#: When the watchdog must have cut a body that comes a byte a second (it checks every second).
CUT_WITHIN_S = BODY_GRACE_S + 10


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, edge_home: Path) -> Iterator[LiveServer]:
    home = copy_home(edge_home, tmp_path_factory.mktemp("slow") / "home")
    live = start_server(home, "--threads", str(THREADS))
    yield live
    live.stop()


def port_of(server: LiveServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


def timed_predict(server: LiveServer, photo: bytes) -> float:
    started = time.monotonic()
    answer = requests.post(
        f"{server.url}/predict", files={"file": ("p.jpg", photo)}, timeout=ANSWER_WITHIN_S * 4
    )
    assert answer.status_code == 200, answer.text
    return time.monotonic() - started


class Trickle:
    """A client that sends ``head`` and then ``body`` a byte a second until it is cut off."""

    def __init__(self, port: int, head: bytes, body: bytes = b"") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.head, self.body = head, body
        self.cut = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._send, daemon=True)
        self.thread.start()

    def _send(self) -> None:
        try:
            self.sock.sendall(self.head)
            for byte in self.body:
                self.sock.sendall(bytes([byte]))
                if self.stop.wait(1.0):
                    return
                if self._server_closed():
                    break
        except OSError:  # reset or broken pipe: the server cut us off
            pass
        self.cut.set()

    def _server_closed(self) -> bool:
        """Whether the server has answered or closed its end (without waiting)."""
        self.sock.setblocking(False)
        try:
            return self.sock.recv(1, socket.MSG_PEEK) is not None
        except BlockingIOError:
            return False
        finally:
            self.sock.setblocking(True)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


def slow_body(port: int) -> Trickle:
    body = b"\xff\xd8" + bytes(100_000)
    head = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return Trickle(port, head, body)


def slow_headers(port: int) -> Trickle:
    return Trickle(port, b"", b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + bytes(200))


def test_idle_connections_and_a_slow_body_do_not_starve_the_server(
    server: LiveServer, dataset_photos: dict[str, list[Path]]
) -> None:
    """gunicorn's own gthread parks each new connection in a thread for up to 5 s: 200 idle
    ones kept /predict waiting for minutes, and a body sent a byte a second held its thread
    for ever."""
    photo = dataset_photos["grass"][3].read_bytes()
    timed_predict(server, photo)  # warm
    port = port_of(server)
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
    trickle = slow_body(port)
    try:
        started, answers = time.monotonic(), []
        while not trickle.cut.is_set():
            answers.append(timed_predict(server, photo))
            assert time.monotonic() - started < CUT_WITHIN_S, "the slow body was not cut off"
            time.sleep(0.5)
        assert len(answers) >= 10 and max(answers) < ANSWER_WITHIN_S, answers
    finally:
        trickle.close()
        for sock in idle:
            sock.close()
    assert "its body came at" in server.log.read_text()


def test_slow_bodies_on_every_thread_hold_the_server_only_until_cut(
    server: LiveServer, dataset_photos: dict[str, list[Path]]
) -> None:
    photo = dataset_photos["grass"][4].read_bytes()
    trickles = [slow_body(port_of(server)) for _ in range(THREADS)]
    try:
        time.sleep(1)  # each holds a thread now
        waited = timed_predict(server, photo)
        assert waited < CUT_WITHIN_S + ANSWER_WITHIN_S  # a thread came free when they were cut
        assert all(trickle.cut.wait(CUT_WITHIN_S) for trickle in trickles)
    finally:
        for trickle in trickles:
            trickle.close()


def test_headers_sent_a_byte_a_second_are_cut_off(server: LiveServer) -> None:
    trickle = slow_headers(port_of(server))
    try:
        assert trickle.cut.wait(HEADERS_WITHIN_S + 10), "slow headers were not cut off"
    finally:
        trickle.close()
    assert "its headers took over" in server.log.read_text()
