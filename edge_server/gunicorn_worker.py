"""The gunicorn worker ``classifi serve`` runs: ``gthread`` that slow and idle clients do not
starve (see :mod:`edge_server.slow_clients`).

Two changes to gunicorn 26's ``gthread``, whose threads serve the requests:

- a connection that has sent nothing yet waits on the worker's poller, not in a thread.
  ``gthread`` parks each new connection in a thread for up to 5 s first, so 200 idle
  connections from one client delayed every other request by a minute;
- a request must come in at a minimum pace, its headers too: the watchdog cuts the reading
  side of a connection that falls behind.

Only gunicorn and the standard library are imported here: the master loads this module
before it forks, and the workers must import prometheus_client for the first time
themselves (edge_server.wsgi).
"""

from __future__ import annotations

from typing import Any

from gunicorn.workers.gthread import _DEFER, ThreadWorker

from edge_server.slow_clients import WATCHDOG

#: How long a thread looks for a new connection's first bytes before the poller takes over.
FIRST_BYTES_WAIT_S = 0.0


class BoundedThreadWorker(ThreadWorker):
    """``gthread`` that gives threads only to connections with bytes to read, and cuts the
    requests that arrive too slowly."""

    def handle(self, conn: Any) -> Any:
        fresh = not conn.initialized and not conn.data_ready
        if fresh and not conn.wait_for_data(FIRST_BYTES_WAIT_S):
            return _DEFER  # gthread then waits for the bytes on its poller, up to keepalive
        client = conn.client[0] if isinstance(conn.client, tuple) else str(conn.client)
        with WATCHDOG.reading(conn.sock, client):
            return super().handle(conn)
