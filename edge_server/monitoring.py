"""Prometheus scraping and client usage reports."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue

from core import metrics
from core.usage import usage_report
from edge_server.auth import require_device

bp = Blueprint("monitoring", __name__)

#: The client label of the usage metric: the desktop in remote mode is the one reporter.
CLIENT = "desktop"


@bp.get("/metrics")
def scrape() -> ResponseReturnValue:
    body, content_type = metrics.render()
    return Response(body, content_type=content_type)


@bp.before_request
def require_key_for_usage() -> None:
    if request.endpoint == "monitoring.usage":  # scraping /metrics needs no key
        require_device()


@bp.post("/usage")
def usage() -> ResponseReturnValue:
    """The desktop in remote mode reports its usage: ``{"event": "session", "count": 1}``."""
    report = usage_report(request.get_data())
    metrics.CLIENT_EVENTS.labels(CLIENT, report.event).inc(report.count)
    return jsonify({"event": report.event, "counted": report.count})
