"""Who may call what.

- Admin routes need ``Authorization: Bearer <admin token>``. There is no default token: the
  first ``classifi serve`` generates one, prints it once and keeps only its salted hash;
  ``classifi admin-token reset`` makes a new one.
- Prediction, submission and usage routes are open when the server is bound to loopback
  (127.0.0.1, ::1, localhost): only this machine can reach them. Bound to any other interface
  they require one of the API keys in ``settings.api_keys`` (``CLASSIFI_API_KEYS``), sent as
  ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``, whenever at least one key is
  configured. With no key configured they stay open (a warning is logged at start), so a
  trusted LAN works out of the box; configure keys before exposing the server further.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import request

from core.config import Settings
from core.errors import AuthError
from edge_server.services import current

log = logging.getLogger(__name__)

View = TypeVar("View", bound=Callable[..., Any])


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def api_keys_required(settings: Settings) -> bool:
    return bool(settings.api_keys) and not is_loopback(settings.host)


def check_api_key(settings: Settings) -> None:
    """Raise :class:`AuthError` unless the request carries a configured API key (if needed)."""
    if not api_keys_required(settings):
        return
    sent = request.headers.get("X-API-Key") or bearer_token()
    if not sent:
        raise AuthError("An API key is required: send it as 'X-API-Key: <key>'.")
    # Compare against every key so the time taken does not tell which one was close.
    matches = [
        hmac.compare_digest(sent.encode(), key.get_secret_value().encode())
        for key in settings.api_keys
    ]
    if not any(matches):
        raise AuthError("The API key is wrong.")


def admin_required(view: View) -> View:
    """Reject the request with 401 unless it carries the admin token."""

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        current().app.verify_admin_token(bearer_token())
        return view(*args, **kwargs)

    return guarded  # type: ignore[return-value]


def warn_if_open(settings: Settings) -> None:
    if not is_loopback(settings.host) and not settings.api_keys:
        log.warning(
            "Serving on %s with no API key: prediction and submission routes are open to the "
            "network. Set CLASSIFI_API_KEYS to require a key.",
            settings.host,
        )
