"""Rate limits on every route of the edge server (Flask-Limiter), read from the settings.

- Per client address, on every route, before anything else runs (so a flood of made-up keys
  is refused before a key is looked up): ``rate_limit_predict`` for classification,
  ``rate_limit_submit`` for submissions, ``rate_limit_pair`` for ``/pair`` (pairing codes are
  short: guesses must be few), ``rate_limit_other`` for the rest; one count per route.
- Per device key, the same rate, once the key has been checked: a request that sends one.
- Refused admin tokens, per address, in one count for the REST admin routes and the web
  page's sign-in (``rate_limit_sign_in``). Only refusals count: an admin who signs in is
  never locked out by doing so.

A request over a limit answers 429 with Retry-After (:func:`retry_after_s`). Counts are kept
in Redis when the task queue is on Redis (``settings.queue_url``), so that a limit holds
across the workers of a server and across servers (and in memory while Redis is down);
otherwise in each process's memory.
Clients are told apart by address: behind a trusted proxy (``settings.trusted_proxy``) the
one it forwards, else the peer's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, request
from flask_limiter import ApplicationLimit, Limiter

from core.config import Settings, rate_limits
from edge_server.auth import CHECKS_ADMIN_TOKEN, request_device
from edge_server.services import current

EXTENSION = "classifi_limiter"

#: The rate setting of each route (by endpoint) that is not ``rate_limit_other``.
RATES = {
    "predict.predict_one": "rate_limit_predict",
    "predict.predict_batch": "rate_limit_predict",
    "submissions.check_duplicate": "rate_limit_predict",
    "web.classify": "rate_limit_predict",
    "submissions.submit": "rate_limit_submit",
    "web.propose": "rate_limit_submit",
    "pairing.pair": "rate_limit_pair",
}
OTHER = "rate_limit_other"
SIGN_IN = "rate_limit_sign_in"


def storage_uri(settings: Settings) -> str:
    if settings.queue_url.startswith(("redis://", "rediss://")):
        return settings.queue_url
    return "memory://"


def client_address() -> str:
    """The client's address, the rate limits' key."""
    if current().settings.trusted_proxy:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded:  # the proxy appends the address it saw: the last hop is the trusted one
            return forwarded.rsplit(",", 1)[-1].strip()
    return request.remote_addr or "unknown"


def _refused_token(response: Response) -> bool:
    return response.status_code == 401


def install(app: Flask, settings: Settings) -> Limiter:
    """Put the limits on every route of ``app`` (register the blueprints first)."""
    # Read every rate now: a typo stops the start with the setting's name, not a request.
    for name in {*RATES.values(), OTHER, SIGN_IN}:
        rate_limits(settings, name)
    token_endpoints = {
        endpoint
        for endpoint, view in app.view_functions.items()
        if getattr(view, CHECKS_ADMIN_TOKEN, False)
    }

    def route_rate() -> str:
        return str(getattr(settings, RATES.get(request.endpoint or "", OTHER)))

    def too_many(who: str) -> Callable[[], str]:
        return lambda: f"Too many requests {who} to {request.path}: at most {route_rate()}."

    per_address = ApplicationLimit(
        limit_provider=route_rate,
        key_function=client_address,
        scope=lambda endpoint: endpoint,  # one count per route
        error_message=too_many("from this address"),
    )
    refused_tokens = ApplicationLimit(
        limit_provider=settings.rate_limit_sign_in,
        key_function=client_address,
        scope="admin-sign-in",  # the REST admin routes and the page's sign-in share it
        exempt_when=lambda: request.endpoint not in token_endpoints,
        deduct_when=_refused_token,
        error_message=(
            f"Too many refused admin tokens from this address: at most "
            f"{settings.rate_limit_sign_in}."
        ),
    )
    limiter = Limiter(
        client_address,
        app=app,
        storage_uri=storage_uri(settings),
        application_limits=[per_address, refused_tokens],
        key_prefix="classifi",
        # Redis down: the same limits go on in this process's memory, not a 500 for all.
        in_memory_fallback_enabled=True,
        # Retry-After is set by the error handlers, from retry_after_s (never 0).
        headers_enabled=False,
    )
    # Checked in each view's wrapper, after the blueprints' key check has named the device.
    per_key = limiter.limit(
        route_rate,
        key_func=lambda: f"device:{request_device()}",
        exempt_when=lambda: request_device() is None,
        error_message=too_many("with this device key"),
    )
    for endpoint in list(app.view_functions):
        if endpoint.rpartition(".")[2] != "static":
            view: Callable[..., Any] = app.view_functions[endpoint]
            app.view_functions[endpoint] = per_key(view)
    app.extensions[EXTENSION] = limiter
    return limiter


def retry_after_s() -> int:
    """Seconds until the limit this request broke lets its client try again."""
    limiter: Limiter = current_app.extensions[EXTENSION]
    broken = limiter.current_limit
    if broken is None:
        return 60
    reset_at, _remaining = broken.window
    return max(1, math.ceil(reset_at - time.time()))
