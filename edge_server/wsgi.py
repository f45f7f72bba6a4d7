"""Running the app under a production WSGI server: gunicorn, or waitress where it cannot run.

gunicorn forks ``workers`` processes, each with ``server_threads`` threads (the ``gthread``
worker, so concurrent requests in one process share backbone passes in the micro-batcher).
The app is built after the fork, so each worker loads the model once at its start. For a
plain ``gunicorn`` command line use the factory: ``gunicorn "edge_server.wsgi:create_app()"``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from core.config import Settings

log = logging.getLogger(__name__)

# Workers import torch and load the model before they answer; give a busy machine time for it.
WORKER_TIMEOUT_S = 300
# On stop, requests in flight get this long to finish (a full /predict/batch takes a few
# seconds). gunicorn 26 also waits this long on an idle keep-alive connection, such as the
# desktop's: its default of 30 s made every stop take 30 s.
GRACEFUL_TIMEOUT_S = 10


def create_app(settings: Settings | None = None) -> Any:
    """The app built from ``settings`` or, for an external WSGI server, the environment."""
    from edge_server.app import create_app as factory

    return factory(settings)


def gunicorn_available() -> bool:
    if sys.platform == "win32":
        return False
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        return False
    return True


def _child_exit(_server: Any, worker: Any) -> None:
    from core.metrics import mark_process_dead

    mark_process_dead(worker.pid)


def run_gunicorn(settings: Settings) -> None:
    from gunicorn.app.base import BaseApplication

    class EdgeServer(BaseApplication):
        def load_config(self) -> None:
            options: dict[str, Any] = {
                "bind": f"{settings.host}:{settings.port}",
                "workers": settings.server_workers,
                "worker_class": "gthread",
                "threads": settings.server_threads,
                "preload_app": False,  # build the app (and load the model) in each worker
                "timeout": WORKER_TIMEOUT_S,
                "graceful_timeout": GRACEFUL_TIMEOUT_S,
                "child_exit": _child_exit,
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

    EdgeServer().run()


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
