"""Serving the app: the one start-up of every way to run the edge server.

:func:`create_app` is the WSGI entry point. ``classifi serve`` calls it in each worker, and so
can a plain ``gunicorn "edge_server.wsgi:create_app()"`` (settings from the environment),
with the same result. In every process that serves it:

- caps glibc's malloc arenas before any request thread starts (:mod:`core.memory`);
- shares the Prometheus values of the workers of one gunicorn server through a directory
  named after their master, which ``/metrics`` merges (set before prometheus_client is
  first imported: it picks its value store then);
- creates the admin token on the first start and prints it, once (the first worker to
  open a fresh registry migrates it; the others wait their turn in core.registry), and, bound
  off loopback with no device key and no ``api_keys``, the first device key likewise;
- loads the champion before the worker answers, and builds the app.

``classifi serve`` forks ``workers`` gunicorn processes, each with ``server_threads`` threads
(``gthread``, made to resist slow and idle clients in :mod:`edge_server.gunicorn_worker`, so
that concurrent requests in one process share backbone passes in the micro-batcher);
waitress (one process, which buffers each request before the app sees it) serves where
gunicorn cannot run. Under any gunicorn worker a request body that comes in too slowly is
cut (:mod:`edge_server.slow_clients`). A plain gunicorn takes its options from its command
line (``--workers 2 --worker-class edge_server.gunicorn_worker.BoundedThreadWorker
--threads 8``); set
``CLASSIFI_HOST`` to the interface it binds, since the device-key rule (see ``auth``) reads it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.config import Settings, load_settings
from core.memory import limit_malloc_arenas
from edge_server.slow_clients import bound_request_reads

if TYPE_CHECKING:
    from flask import Flask

    from core.app import App

log = logging.getLogger(__name__)

# Workers load the model (and may export a backbone first) before they answer: time for it.
WORKER_TIMEOUT_S = 300
# On stop, requests in flight get this long to finish (a full /predict/batch takes a few
# seconds). gunicorn 26 also waits this long on an idle keep-alive connection, such as the
# desktop's: its default of 30 s made every stop take 30 s.
GRACEFUL_TIMEOUT_S = 10
# An idle connection (kept alive, or opened and silent) is closed after this long; it waits
# on the worker's poller meanwhile, never in a thread (edge_server.gunicorn_worker).
KEEPALIVE_S = 5
# At most 50 header fields (a browser sends about 20) and a request line of 8 KB, gunicorn's
# largest: a longer line than its default 4 KB still reaches the app, which says what is
# wrong in the API's JSON shape, where gunicorn would answer its own HTML page.
LIMIT_REQUEST_LINE = 8190
LIMIT_REQUEST_FIELDS = 50
WORKER_CLASS = "edge_server.gunicorn_worker.BoundedThreadWorker"

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
TOKEN_NOTICE = """A new admin token was generated. It is shown only this once:
  {token}
Send it as 'Authorization: Bearer <token>'; 'classifi admin-token reset' replaces it."""
DEVICE_KEY_NOTICE = """A device key for {device!r} was generated. It is shown only this once:
  {key}
Devices send it as 'X-API-Key: <key>'. 'classifi keys create NAME' makes one per device,
'classifi keys pair NAME' a pairing code, 'classifi keys revoke {device}' ends this one."""
_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db")


def create_app(settings: Settings | None = None) -> Flask:
    """The app built from ``settings`` or, for a plain WSGI server, the environment."""
    limit_malloc_arenas()
    settings = settings or load_settings(os.environ)
    share_metrics_between_workers()
    from edge_server.app import create_app as factory
    from edge_server.services import Services

    services = Services.build(settings)
    announce_admin_token(services.app)  # before the model load, which takes a while
    announce_first_device_key(services.app)
    services.load_model()
    app = factory(services=services)
    app.wsgi_app = bound_request_reads(app.wsgi_app)  # type: ignore[method-assign,assignment]
    return app


def _metrics_dir(master_pid: int) -> Path:
    return Path(tempfile.gettempdir()) / f"classifi-metrics-{master_pid}"


def _under_gunicorn() -> bool:
    return os.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn/")  # set by its master


def share_metrics_between_workers() -> None:
    """Under gunicorn, write this worker's metrics where its siblings write theirs.

    An explicit ``PROMETHEUS_MULTIPROC_DIR`` wins; a single process needs none. The live
    gauges of processes that are gone (a worker that died, an earlier server whose master
    had the same pid) are dropped, so that ``classifi_model_info`` shows only live ones.
    """
    if MULTIPROC_ENV not in os.environ:
        if not _under_gunicorn():
            return
        os.environ[MULTIPROC_ENV] = str(_metrics_dir(os.getppid()))
    directory = Path(os.environ[MULTIPROC_ENV])
    directory.mkdir(parents=True, exist_ok=True)
    from prometheus_client import multiprocess

    from core import metrics

    if not metrics.MULTIPROCESS:
        log.warning(
            "prometheus_client was imported before %s was set: /metrics shows one worker only",
            MULTIPROC_ENV,
        )
        return

    for path in directory.iterdir():
        if (found := _LIVE_GAUGE_FILE.fullmatch(path.name)) and not _alive(int(found[1])):
            multiprocess.mark_process_dead(int(found[1]), str(directory))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def announce_admin_token(app: App) -> None:
    """Create the admin token if there is none and print it: the only time it is shown."""
    token = app.ensure_admin_token()  # None when it exists (another worker made it first)
    if token is not None:
        print(TOKEN_NOTICE.format(token=token), flush=True)
        log.warning("A new admin token was generated and printed on standard output, once.")


def announce_first_device_key(app: App) -> None:
    """Off loopback with no key at all, make the first device key and print it, once."""
    from core.auth import FIRST_DEVICE
    from edge_server.auth import keys_required

    if not keys_required(app.settings) or app.settings.api_keys:
        return
    key = app.ensure_first_device_key()  # None when keys exist (or another worker made it)
    if key is not None:
        print(DEVICE_KEY_NOTICE.format(device=FIRST_DEVICE, key=key), flush=True)
        log.warning(
            "A device key %r was generated and printed on standard output, once.", FIRST_DEVICE
        )


def gunicorn_available() -> bool:
    if sys.platform == "win32":
        return False
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        return False
    return True


def run_gunicorn(settings: Settings) -> None:
    from gunicorn.app.base import BaseApplication

    class EdgeServer(BaseApplication):
        def load_config(self) -> None:
            options: dict[str, Any] = {
                "bind": f"{settings.host}:{settings.port}",
                "workers": settings.server_workers,
                "worker_class": WORKER_CLASS,
                "threads": settings.server_threads,
                "preload_app": False,  # build the app (and load the model) in each worker
                "timeout": WORKER_TIMEOUT_S,
                "graceful_timeout": GRACEFUL_TIMEOUT_S,
                "keepalive": KEEPALIVE_S,
                "limit_request_line": LIMIT_REQUEST_LINE,
                "limit_request_fields": LIMIT_REQUEST_FIELDS,
                "errorlog": "-",
                "loglevel": settings.log_level.lower(),
                "proc_name": "classifi-serve",
            }
            if "control_socket_disable" in self.cfg.settings:  # gunicorn >= 25.1
                # No runtime control socket in $HOME: several servers may share a machine.
                options["control_socket_disable"] = True
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return create_app(settings)

    master = os.getpid()
    try:
        EdgeServer().run()
    finally:
        # The forked workers unwind through here too when they exit: only the master may
        # remove the directory that the other workers still write to.
        if os.getpid() == master and MULTIPROC_ENV not in os.environ:
            shutil.rmtree(_metrics_dir(master), ignore_errors=True)


def waitress_server(app: Any, settings: Settings) -> Any:
    """A waitress server for ``app`` (one process, ``server_threads`` threads); call .run()."""
    import waitress

    if settings.server_workers > 1:
        log.warning("waitress runs one process: --workers %d is ignored", settings.server_workers)
    return waitress.create_server(
        app, host=settings.host, port=settings.port, threads=settings.server_threads
    )


def run_waitress(settings: Settings) -> None:
    waitress_server(create_app(settings), settings).run()


def run(settings: Settings) -> None:
    """Serve until interrupted."""
    if gunicorn_available():
        run_gunicorn(settings)
    else:
        run_waitress(settings)
