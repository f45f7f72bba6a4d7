"""Prometheus scraping and client usage reports."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import ValidationError

from core import metrics
from core.errors import BadRequest
from core.wire import MAX_USAGE_COUNT, Usage, UsageEvent
from edge_server.auth import check_api_key
from edge_server.services import current

bp = Blueprint("monitoring", __name__)

#: The client label of the usage metric: the desktop in remote mode is the one reporter.
CLIENT = "desktop"


@bp.get("/metrics")
def scrape() -> ResponseReturnValue:
    body, content_type = metrics.render()
    return Response(body, content_type=content_type)


def _usage_report() -> Usage:
    """The request's report; only the fixed vocabulary, so no client can add a series."""
    try:
        return Usage.model_validate_json(request.get_data(), strict=True)
    except ValidationError as exc:
        wrong = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
    events = ", ".join(UsageEvent)
    if "event" in wrong:
        raise BadRequest(f"'event' must be one of {events}.", code="invalid_event")
    if "count" in wrong:
        raise BadRequest(
            f"'count' must be a whole number from 1 to {MAX_USAGE_COUNT}.", code="invalid_count"
        )
    raise BadRequest(
        f'Send a JSON object: {{"event": "{UsageEvent.SESSION}", "count": 1}}, with an event '
        f"among {events}.",
        code="invalid_json",
    )


@bp.post("/usage")
def usage() -> ResponseReturnValue:
    """The desktop in remote mode reports its usage: ``{"event": "session", "count": 1}``."""
    check_api_key(current().settings)
    report = _usage_report()
    metrics.CLIENT_EVENTS.labels(CLIENT, report.event).inc(report.count)
    return jsonify({"event": report.event, "counted": report.count})
