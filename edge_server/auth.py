"""Who may call what.

- Admin routes need ``Authorization: Bearer <admin token>``. There is no default token: the
  first ``classifi serve`` generates one, prints it once and keeps only its salted hash;
  ``classifi admin-token reset`` makes a new one. Refused tokens are rate-limited per client
  address (:mod:`edge_server.limits`).
- Prediction, submission and usage routes (REST and the web page) are open when the server
  is bound to loopback (127.0.0.1, ::1, localhost): only this machine can reach them. Bound
  to any other interface they need a device key, sent as ``X-API-Key: <key>`` or
  ``Authorization: Bearer <key>``: one made by ``classifi keys create`` or by a pairing
  (``classifi keys pair``, ``POST /pair``), kept only as its hash, or one of the plain keys
  of the ``api_keys`` setting. The first start off loopback with neither makes the key
  ``first-device`` and prints it once (:mod:`edge_server.wsgi`). ``allow_anonymous`` opens
  the routes again, for a trusted LAN, and the start says so.
- A request that sends a key speaks for that device wherever the server listens: a wrong
  key is refused even where none is needed, the device's submissions are recorded under its
  name (so the per-submitter quota is per key), and the rate limits count per key too.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import g, request

from core.config import Settings, is_loopback
from core.errors import AuthError
from edge_server.services import current

log = logging.getLogger(__name__)

View = TypeVar("View", bound=Callable[..., Any])

#: How a request sent with one of the plain ``api_keys`` is named: "api_keys[1]" is the
#: first. Brackets are not allowed in device names, so no device key shares its name.
CONFIGURED_KEY_NAME = "api_keys[{}]"


def keys_required(settings: Settings) -> bool:
    """Whether the prediction, submission and usage routes refuse a request without a key."""
    return not is_loopback(settings.host) and not settings.allow_anonymous


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _configured_key(settings: Settings, sent: str) -> str | None:
    # Compared with every key, so that the time taken does not tell which one was close.
    matches = [
        hmac.compare_digest(sent.encode(), key.get_secret_value().encode())
        for key in settings.api_keys
    ]
    return CONFIGURED_KEY_NAME.format(matches.index(True) + 1) if any(matches) else None


def require_device(sent: str | None = None) -> str | None:
    """The device this request speaks for: the owner of ``sent`` (the web page's key), else
    of its X-API-Key or bearer header; None for a request without a key where none is
    needed. :class:`AuthError` for a wrong or revoked key, or a missing one that is needed.
    Kept for the request, where the rate limits per key read it (:func:`request_device`)."""
    services = current()
    key = sent or request.headers.get("X-API-Key") or bearer_token()
    if not key:
        if keys_required(services.settings):
            raise AuthError(
                "A device key is required: send it as 'X-API-Key: <key>'. The server's admin "
                "makes one with `classifi keys create NAME`, or a pairing code with "
                "`classifi keys pair NAME`."
            )
        device = None
    else:
        device = _configured_key(services.settings, key) or services.app.device_of_key(key)
    g.device = device
    return device


def request_device() -> str | None:
    """The device :func:`require_device` found for this request (None: anonymous)."""
    device: str | None = g.get("device")
    return device


#: Marks a view that checks the admin token: its 401s count towards the sign-in rate limit.
CHECKS_ADMIN_TOKEN = "checks_admin_token"


def checks_admin_token(view: View) -> View:
    """Mark ``view`` as one that checks the admin token (see :data:`CHECKS_ADMIN_TOKEN`)."""
    setattr(view, CHECKS_ADMIN_TOKEN, True)
    return view


def admin_required(view: View) -> View:
    """Reject the request with 401 unless it carries the admin token."""

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        current().app.verify_admin_token(bearer_token())
        return view(*args, **kwargs)

    return checks_admin_token(guarded)  # type: ignore[return-value]


def announce_exposure(settings: Settings) -> None:
    """Say at start who can reach the keyed routes, when that is anyone on the network."""
    if is_loopback(settings.host):
        return
    if settings.allow_anonymous:
        log.warning(
            "Serving on %s with allow_anonymous: prediction, submission and usage are open to "
            "anyone who can reach this port, without a key. Use it on a trusted LAN only.",
            settings.host,
        )
    else:
        log.info(
            "Serving on %s: prediction, submission and usage need a device key "
            "(`classifi keys list`).",
            settings.host,
        )
