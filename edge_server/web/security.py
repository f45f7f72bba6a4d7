"""What keeps the web page's forms and sessions safe.

- The session (a signed cookie: the CSRF token and, once signed in, the fingerprint of the
  admin token it was opened with, so that resetting the token signs every session out) is
  ``HttpOnly``, ``SameSite=Strict``, and ``Secure`` whenever the request came over TLS.
- Every POST carries the session's CSRF token in a form field; it is compared in constant
  time, and a form without it is refused before its view runs.
- The API key the page was given is kept for the no-JavaScript path in a cookie of its own
  (the script keeps it in localStorage), with the same flags.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta

from flask import Flask, Response, request, session
from flask.sessions import SecureCookieSessionInterface
from werkzeug.exceptions import BadRequest

from edge_server.services import current

CSRF_FIELD = "csrf_token"
_CSRF_KEY = "csrf"
_ADMIN_KEY = "admin"
API_KEY_FIELD = "api_key"
API_KEY_COOKIE = "classifi_api_key"
API_KEY_COOKIE_AGE = timedelta(days=365)
#: An admin stays signed in this long on a phone, then signs in again.
ADMIN_SESSION = timedelta(hours=8)


def request_is_tls() -> bool:
    """Whether the browser reached us over HTTPS (as a trusted proxy says, if there is one)."""
    if current().settings.trusted_proxy:
        forwarded = request.headers.get("X-Forwarded-Proto", "")
        if forwarded:  # the last value is the one the trusted proxy set
            return forwarded.rsplit(",", 1)[-1].strip().lower() == "https"
    return request.is_secure


class PageSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, ``Secure`` exactly when the request came over TLS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return request_is_tls()


def configure_sessions(app: Flask, secret_key: str) -> None:
    app.secret_key = secret_key
    app.session_interface = PageSessionInterface()
    app.config.update(
        SESSION_COOKIE_NAME="classifi_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=ADMIN_SESSION,
    )


def csrf_token() -> str:
    """This session's CSRF token, made on first use."""
    if _CSRF_KEY not in session:
        session[_CSRF_KEY] = secrets.token_urlsafe(32)
    token: str = session[_CSRF_KEY]
    return token


def check_csrf() -> None:
    """Refuse a POST whose form does not carry this session's CSRF token."""
    sent = request.form.get(CSRF_FIELD, "")
    expected = session.get(_CSRF_KEY, "")
    if not (sent and expected and hmac.compare_digest(sent.encode(), expected.encode())):
        raise BadRequest(
            "This form has expired or was not sent from this page: reload the page and try again."
        )


def sign_in_admin() -> None:
    """A fresh session (new CSRF token) for the admin: nothing from before carries over. It
    keeps the fingerprint of the admin token it was opened with: resetting the token ends it."""
    session.clear()
    session[_ADMIN_KEY] = current().app.admin_token_fingerprint()
    session.permanent = True
    csrf_token()


def sign_out_admin() -> None:
    session.clear()


def admin_signed_in() -> bool:
    """Signed in, with the admin token that is still the current one."""
    opened_with = session.get(_ADMIN_KEY)
    if not isinstance(opened_with, str):
        return False
    current_token = current().app.admin_token_fingerprint() or ""
    return hmac.compare_digest(opened_with.encode(), current_token.encode())


def remember_api_key(response: Response, key: str) -> None:
    response.set_cookie(
        API_KEY_COOKIE,
        key,
        max_age=API_KEY_COOKIE_AGE,
        secure=request_is_tls(),
        httponly=True,
        samesite="Strict",
    )


def forget_api_key(response: Response) -> None:
    response.delete_cookie(
        API_KEY_COOKIE, secure=request_is_tls(), httponly=True, samesite="Strict"
    )


def sent_api_key() -> str | None:
    """The key this request brings: typed into the form, else the cookie's."""
    return request.form.get(API_KEY_FIELD, "").strip() or request.cookies.get(API_KEY_COOKIE)
