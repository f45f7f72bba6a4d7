"""Rate limits on the edge server's routes (Flask-Limiter), in one table.

Counts are kept in Redis when the task queue is on Redis (``settings.queue_url``), so that
one limit holds across the workers of a server and across servers; otherwise in each
process's memory. Clients are told apart by address: behind a trusted proxy
(``settings.trusted_proxy``) the one it forwards, else the peer's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, current_app, request
from flask_limiter import Limiter

from core.config import Settings
from edge_server.services import current

EXTENSION = "classifi_limiter"


@dataclass(frozen=True)
class Rule:
    rate: str
    methods: tuple[str, ...] = ("POST",)
    #: Only answers for which this is true use up the limit (None: every answer).
    counts: Callable[[Response], bool] | None = None


def _refused(response: Response) -> bool:
    return response.status_code >= 400


#: The limited routes, by endpoint. Guessing the admin token is what the sign-in limit stops:
#: refused sign-ins use it up, so an admin who signs in is never locked out by doing so.
RULES = {
    "web.sign_in": Rule("5 per minute", counts=_refused),
}


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


def install(app: Flask, settings: Settings) -> Limiter:
    """Put the limits of :data:`RULES` on ``app``'s routes (register the blueprints first)."""
    limiter = Limiter(
        client_address,
        app=app,
        storage_uri=storage_uri(settings),
        headers_enabled=True,  # Retry-After on a 429
        key_prefix="classifi",
    )
    for endpoint, rule in RULES.items():
        limit = limiter.limit(rule.rate, methods=list(rule.methods), deduct_when=rule.counts)
        view: Callable[..., Any] = app.view_functions[endpoint]
        app.view_functions[endpoint] = limit(view)
    app.extensions[EXTENSION] = limiter
    return limiter


def retry_after_s() -> int:
    """Seconds until the limit this request broke lets its client try again."""
    limiter: Limiter = current_app.extensions[EXTENSION]
    broken = limiter.current_limit
    return max(1, broken.reset_at - int(time.time())) if broken is not None else 60
