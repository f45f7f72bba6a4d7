"""The edge server's Flask app factory.

``create_app(settings)`` builds this process's services once (the application acting as
``edge-admin``, and the micro-batcher over its predictor), loads the champion model, and
registers the blueprints. Nothing here knows how a model works or where a photo is stored:
the routes call the application and answer with its wire models as JSON. Tests pass their
own ``services`` to share one trained model between apps. Serving it for real (the admin
token, metrics across workers) starts in :mod:`edge_server.wsgi`.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from flask import Flask, Response, g, request

from core import metrics
from core.config import Settings, load_settings
from edge_server import (
    admin,
    health,
    limits,
    monitoring,
    openapi,
    pairing,
    predict,
    submissions,
    web,
)
from edge_server.auth import announce_exposure
from edge_server.errors import register_error_handlers
from edge_server.services import Services, current
from edge_server.uploads import body_limit, discard_unread_body

log = logging.getLogger(__name__)


def _start_clock() -> None:
    g.started = time.perf_counter()


def _finish_request(response: Response) -> Response:
    discard_unread_body(current().settings)
    return _record_request(response)


#: The methods a metric names; any other (a client may send "BREW") is counted as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _record_request(response: Response) -> Response:
    # No label comes from the client: the route is the URL rule's template, never the path.
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    method = request.method if request.method in METHODS else "other"
    elapsed = time.perf_counter() - g.get("started", time.perf_counter())
    metrics.HTTP_REQUESTS.labels(method, route, str(response.status_code)).inc()
    metrics.HTTP_LATENCY.labels(method, route).observe(elapsed)
    metrics.API_REQUESTS.labels(method, route).inc()
    return response


def _allow_origins(settings: Settings) -> Any:
    origins = set(settings.cors_origins)

    def add_cors_headers(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if origin and (origin in origins or "*" in origins):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Headers"] = (
                "Authorization, Content-Type, X-API-Key"
            )
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response.vary.add("Origin")
        return response

    return add_cors_headers


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> Flask:
    """The WSGI app. Without arguments, settings come from the environment (an entry point)."""
    if services is None:
        settings = settings or load_settings(os.environ)
        services = Services.build(settings)
        services.load_model()
    settings = services.settings

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = body_limit(settings)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["classifi"] = services

    # Before the routes are added: their <int:...> is then one the registry can hold.
    app.url_map.converters["int"] = admin.RegistryId
    register_error_handlers(app)
    for blueprint in (
        predict.bp,
        submissions.bp,
        admin.bp,
        health.bp,
        monitoring.bp,
        openapi.bp,
        pairing.bp,
    ):
        app.register_blueprint(blueprint)
    web.register(app, services)

    app.before_request(_start_clock)
    app.after_request(_finish_request)
    limits.install(app, settings)  # after the clock: a refused request is timed too
    if settings.cors_origins:
        app.after_request(_allow_origins(settings))
    announce_exposure(settings)
    return app
