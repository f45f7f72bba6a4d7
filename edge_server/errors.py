"""One JSON error shape for every failure: ``{"error": {"code": ..., "message": ...}}``.

Bad input never gives a 500 or a stack trace: the project's exceptions answer with their own
``status`` and ``code`` (core/errors.py), werkzeug's HTTP errors keep their status, and
anything else is logged with its traceback and answered with a generic 500.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from flask_limiter.errors import RateLimitExceeded
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from core import errors
from core.wire import WireModel
from edge_server import limits

log = logging.getLogger(__name__)

# A model loads in a few seconds: a client may retry a 503 ModelLoading after this long.
RETRY_AFTER_S = 5


class ErrorDetail(WireModel):
    """What went wrong: a stable machine-readable code and a message naming the fix."""

    code: str
    message: str


class ErrorAnswer(WireModel):
    """The body of every error answer (pinned by a test)."""

    error: ErrorDetail


def describe(error: errors.ClassifiError) -> ErrorDetail:
    """An error's code and message, also used inline in batch answers."""
    return ErrorDetail(code=error.code, message=str(error))


def error_response(status: int, detail: ErrorDetail) -> tuple[Response, int]:
    return jsonify(ErrorAnswer(error=detail).to_dict()), status


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(errors.ClassifiError)
    def classifi_error(error: errors.ClassifiError) -> tuple[Response, int]:
        if error.status == 503:  # a passing state (no model yet, a store down): no traceback
            log.warning("request refused: %s", error)
        elif error.status >= 500:
            log.error("request failed: %s", error, exc_info=error)
        response, status = error_response(error.status, describe(error))
        if isinstance(error, errors.AuthError):
            response.headers["WWW-Authenticate"] = "Bearer"
        if isinstance(error, errors.ModelLoading):
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response, status

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response, int]:
        code = "_".join((error.name or "error").lower().split())  # "Not Found" -> not_found
        message = error.description or error.name
        response, status = error_response(
            error.code or 500, ErrorDetail(code=code, message=message)
        )
        for name, value in error.get_headers():
            if name.lower() not in ("content-type", "content-length"):
                response.headers[name] = value
        return response, status

    @app.errorhandler(RateLimitExceeded)
    def rate_limited(error: RateLimitExceeded) -> tuple[Response, int]:
        wait = limits.retry_after_s()
        message = f"{error.description} Wait {wait} seconds, then try again."
        response, status = error_response(
            errors.RateLimited.status, ErrorDetail(code=errors.RateLimited.code, message=message)
        )
        response.headers["Retry-After"] = str(wait)
        return response, status

    @app.errorhandler(RequestEntityTooLarge)
    def body_too_large(error: RequestEntityTooLarge) -> tuple[Response, int]:
        limit = request.max_content_length or 0
        message = (
            f"The request body is over {limit / 1e6:.1f} MB: each photo may be at most "
            "max_upload_bytes (setting) plus room for the form."
        )
        return error_response(413, ErrorDetail(code="too_large", message=message))

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception) -> tuple[Response, int]:
        log.exception("unexpected error while answering a request")
        message = "The server failed to answer; the error is in its log."
        return error_response(500, ErrorDetail(code="internal_error", message=message))
