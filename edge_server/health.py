"""Liveness and readiness for orchestrators and load balancers."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from core.errors import ClassifiError
from edge_server.services import current

bp = Blueprint("health", __name__)


@bp.get("/health/live")
def live() -> ResponseReturnValue:
    """The process answers: it need not be able to classify yet."""
    return jsonify({"status": "alive"})


@bp.get("/health/ready")
def ready() -> ResponseReturnValue:
    """200 only when the champion is loaded and the registry and the store answer."""
    services = current()
    problems: dict[str, str] = {}
    # Lambdas: opening a registry or a store that is down fails inside its check too.
    checks: dict[str, Callable[[], object]] = {
        "registry": lambda: services.app.registry.ping(),
        "store": lambda: services.app.store.ping(),
        "model": services.served_model,
    }
    for name, check in checks.items():
        try:
            check()
        except ClassifiError as exc:
            problems[name] = str(exc)
    if problems:
        reason = "; ".join(f"{name}: {message}" for name, message in problems.items())
        body = {
            "status": "unavailable",
            "checks": {name: problems.get(name, "ok") for name in checks},
            "error": {"code": "not_ready", "message": reason},
        }
        return jsonify(body), 503
    return jsonify({"status": "ready", "checks": dict.fromkeys(checks, "ok")})
