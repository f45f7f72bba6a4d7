"""Prometheus scraping and client usage reports."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue

from core import metrics
from edge_server.auth import check_api_key
from edge_server.errors import BadRequest
from edge_server.services import current

bp = Blueprint("monitoring", __name__)

MAX_EVENTS_PER_REPORT = 10_000


@bp.get("/metrics")
def scrape() -> ResponseReturnValue:
    body, content_type = metrics.render()
    return Response(body, content_type=content_type)


@bp.post("/usage")
def usage() -> ResponseReturnValue:
    """The desktop in remote mode reports its usage: ``{"event": "predict", "count": 1}``."""
    check_api_key(current().settings)
    report = request.get_json(silent=True)
    if not isinstance(report, dict):
        raise BadRequest('Send a JSON object: {"event": "predict", "count": 1}.')
    event, count = report.get("event"), report.get("count", 1)
    if not isinstance(event, str) or not metrics.is_event_name(event):
        raise BadRequest(
            "'event' must be a snake_case name of at most 64 characters, e.g. 'predict'.",
            code="invalid_event",
        )
    if type(count) is not int or not 1 <= count <= MAX_EVENTS_PER_REPORT:
        raise BadRequest(
            f"'count' must be a whole number from 1 to {MAX_EVENTS_PER_REPORT}.",
            code="invalid_count",
        )
    metrics.CLIENT_EVENTS.labels("desktop", event).inc(count)
    return jsonify({"event": event, "counted": count})
