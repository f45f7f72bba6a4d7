"""Slow clients must not hold the server's threads: requests that arrive too slowly are cut.

gunicorn 26's ``gthread`` worker reads a request in one of its threads with a blocking socket
and no deadline: a client that sends its headers or its body a byte a second holds that
thread for as long as it likes, and 16 such clients hold them all. (Its ``timeout`` setting
only restarts a worker whose main loop stops, which a stuck thread does not stop; a socket
timeout would bound each ``recv``, which a trickle of bytes always beats.) So a watchdog
thread checks each request in progress once a second, and shuts the reading side of the
socket of one that is behind:

- the request line and headers must arrive within :data:`HEADERS_WITHIN_S` of its first byte;
- after :data:`BODY_GRACE_S`, the body must come in at :data:`BODY_MIN_RATE` on average.

A cut request reads the end of its input at once: gunicorn closes the connection, or the app
answers 400 (the body ended early) and then gunicorn closes it. Sending the answer still
works. The app never waits for the watchdog: a request that arrives in time costs a dict
entry. :func:`bound_request_reads` watches bodies under any gunicorn worker (it reads the
socket gunicorn puts in the environ); :mod:`edge_server.gunicorn_worker` also watches the
headers, which come before the app.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

HEADERS_WITHIN_S = 10.0
BODY_GRACE_S = 10.0
#: 16 KiB/s: a phone on 2G (EDGE) uploads faster; a 10 MB photo may take 10 minutes.
BODY_MIN_RATE = 16 * 1024
CHECK_EVERY_S = 1.0
#: The app reads a body in chunks (werkzeug's are 64 KiB): a chunk in flight is not late.
READ_CHUNK = 64 * 1024

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass
class _Reading:
    """A request being read from ``sock``."""

    sock: socket.socket
    client: str
    started: float = field(default_factory=time.monotonic)
    body_started: float | None = None
    body_read: int = 0
    done: bool = False

    def late(self, now: float) -> str | None:
        """What is late (for the log), or None."""
        if self.done:
            return None
        if self.body_started is None:
            if now - self.started > HEADERS_WITHIN_S:
                return f"its headers took over {HEADERS_WITHIN_S:.0f} s"
            return None
        allowed = (now - self.body_started - BODY_GRACE_S) * BODY_MIN_RATE - READ_CHUNK
        if self.body_read < allowed:
            elapsed = now - self.body_started
            return f"its body came at {self.body_read / elapsed:.0f} B/s"
        return None


class ReadWatchdog:
    """The requests this process is reading, and the thread that cuts the late ones."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readings: dict[int, _Reading] = {}
        self._thread: threading.Thread | None = None

    @contextmanager
    def reading(self, sock: socket.socket, client: str) -> Iterator[_Reading]:
        """Watch the request read from ``sock`` (from its first byte) while the block runs."""
        key = id(sock)
        with self._lock:
            known = self._readings.get(key)
            reading = known or _Reading(sock, client)
            self._readings[key] = reading
            if self._thread is None:  # started in the worker that serves, never before a fork
                self._thread = threading.Thread(
                    target=self._watch, name="slow-client-watchdog", daemon=True
                )
                self._thread.start()
        try:
            yield reading
        finally:
            if known is None:  # the outermost watcher of this request ends its watch
                with self._lock:
                    self._readings.pop(key, None)

    def _watch(self) -> None:
        while True:
            time.sleep(CHECK_EVERY_S)
            now = time.monotonic()
            with self._lock:
                late = [
                    (reading, reason)
                    for reading in self._readings.values()
                    if (reason := reading.late(now))
                ]
                for reading, _ in late:
                    reading.done = True  # cut once
            for reading, reason in late:
                log.warning("Cut a slow request from %s: %s.", reading.client, reason)
                with contextlib.suppress(OSError):  # the client may have gone meanwhile
                    reading.sock.shutdown(socket.SHUT_RD)


#: The one watchdog of this process.
WATCHDOG = ReadWatchdog()


class _CountedInput:
    """``wsgi.input``, counting what the app reads of it into its :class:`_Reading`."""

    def __init__(self, stream: Any, reading: _Reading, length: int | None) -> None:
        self._stream, self._reading, self._length = stream, reading, length

    def _count(self, data: bytes) -> bytes:
        self._reading.body_read += len(data)
        if not data or (self._length is not None and self._reading.body_read >= self._length):
            self._reading.done = True  # all of it is in: the rest of the request is ours
        return data

    def read(self, size: int = -1) -> bytes:
        return self._count(self._stream.read(size))

    def readline(self, size: int = -1) -> bytes:
        return self._count(self._stream.readline(size))

    def readlines(self, hint: int = -1) -> list[bytes]:
        return [self._count(line) for line in self._stream.readlines(hint)]

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


def bound_request_reads(app: WSGIApp) -> WSGIApp:
    """``app``, its request bodies watched under gunicorn (others buffer them first)."""

    def watched(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        sock = environ.get("gunicorn.socket")
        if not isinstance(sock, socket.socket):
            return app(environ, start_response)
        length = environ.get("CONTENT_LENGTH") or None
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        with WATCHDOG.reading(sock, environ.get("REMOTE_ADDR", "?")) as reading:
            reading.body_started = time.monotonic()
            reading.done = length in (None, "0") and not chunked  # no body to wait for
            environ["wsgi.input"] = _CountedInput(
                environ["wsgi.input"], reading, int(length) if length else None
            )
            try:
                return app(environ, start_response)
            finally:
                reading.done = True  # answering (and draining) is not reading late

    return watched
