"""The web page's blueprint: its guards, its headers and its error pages.

Every answer is HTML. With the ``X-Page-Fragment`` header (sent by the page's script) a view
answers with just the part of the page that changed, error messages included; without it, a
whole page, so that every form works with JavaScript off.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, make_response, render_template, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge, TooManyRequests

from core.errors import AuthError, ClassifiError
from edge_server import limits
from edge_server.auth import require_device
from edge_server.services import current
from edge_server.uploads import body_limit
from edge_server.web.security import check_csrf, csrf_token, forget_api_key, sent_api_key

log = logging.getLogger(__name__)

bp = Blueprint(
    "web",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/web/static",
)

FRAGMENT_HEADER = "X-Page-Fragment"
#: The endpoint whose form may carry several photos (the others carry one at most).
SEVERAL_PHOTOS = "web.classify"
#: The forms that classify or submit: they need a device key where the REST routes do.
KEYED = ("web.classify", "web.propose")

# Scripts, styles and images from this server only (previews are blob: URLs, heatmaps data:);
# forms post only here; no other site may frame the page.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def wants_fragment() -> bool:
    return request.headers.get(FRAGMENT_HEADER) == "1"


def page(template: str, fragment: str | None = None, *, status: int = 200, **context: Any) -> Any:
    """The whole ``template``, or only ``fragment`` when the page's script asked for it."""
    chosen = fragment if fragment is not None and wants_fragment() else template
    return render_template(chosen, status=status, **context), status


@bp.before_request
def guard_posts() -> None:
    if request.method != "POST":
        return
    if request.endpoint == SEVERAL_PHOTOS:  # before the form is read, which the check does
        settings = current().settings
        request.max_content_length = body_limit(settings, settings.max_batch_files)
    check_csrf()
    if request.endpoint in KEYED:  # before the view, where the rate limit per key counts it
        require_device(sent_api_key())


@bp.after_request
def page_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


@bp.context_processor
def page_context() -> dict[str, Any]:
    return {"csrf_token": csrf_token, "labels": current().settings.labels}


@bp.app_template_filter("when")
def when(moment: datetime) -> str:
    """A registry time (UTC, with or without its zone) as a phone screen shows it."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _message(title: str, message: str, status: int, **context: Any) -> Any:
    return page(
        "message.html", "_message.html", status=status, title=title, message=message, **context
    )


@bp.errorhandler(ClassifiError)
def refused(error: ClassifiError) -> Any:
    """The project's errors say what is wrong and how to fix it: shown as they are."""
    if error.status >= 500 and error.status != 503:
        log.error("page request failed: %s", error, exc_info=error)
    if isinstance(error, AuthError):  # the API key: a refused one is not kept, the page asks
        response = make_response(
            _message("A key is needed", str(error), error.status, ask_key=True)
        )
        forget_api_key(response)
        return response
    return _message("That did not work", str(error), error.status)


@bp.errorhandler(RequestEntityTooLarge)
def too_large(_error: RequestEntityTooLarge) -> Any:
    settings = current().settings
    message = (
        f"That is too much in one go: send at most {settings.max_batch_files} photos of up to "
        f"{settings.max_upload_bytes / 1e6:.0f} MB each (settings max_batch_files and "
        "max_upload_bytes)."
    )
    return _message("Too large", message, 413)


@bp.errorhandler(TooManyRequests)
def too_many(_error: TooManyRequests) -> Any:
    wait = limits.retry_after_s()
    message = f"Too many attempts from this address. Wait {wait} seconds, then try again."
    response = make_response(_message("Please wait", message, 429))
    response.headers["Retry-After"] = str(wait)
    return response


@bp.errorhandler(HTTPException)
def http_error(error: HTTPException) -> Any:
    return _message(error.name, error.description or error.name, error.code or 500)


@bp.errorhandler(Exception)
def unexpected(error: Exception) -> Any:
    """A bug: logged with its traceback, never shown."""
    log.error("page request failed", exc_info=error)
    message = "Something went wrong on the server. Try again; if it keeps failing, see its log."
    return _message("Server error", message, 500)
