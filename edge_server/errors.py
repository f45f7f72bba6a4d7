"""One JSON error shape for every failure: ``{"error": {"code": ..., "message": ...}}``.

Bad input never gives a 500 or a stack trace: the project's exceptions map to 4xx/503 by
class, werkzeug's HTTP errors keep their status, and anything else is logged with its
traceback and answered with a generic 500.
"""

from __future__ import annotations

import logging
import re

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from core import errors

log = logging.getLogger(__name__)

# Most specific first: the first matching class decides the status.
STATUS_BY_ERROR: tuple[tuple[type[errors.ClassifiError], int], ...] = (
    (errors.UnsupportedMediaType, 415),
    # A photo over the byte or the pixel limit: both are "content too large" (413). The pixel
    # count is read from the header, so a decompression bomb is refused before decoding.
    (errors.ImageTooLarge, 413),
    (errors.InvalidImage, 400),
    (errors.UnknownLabel, 400),
    (errors.AuthError, 401),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.TrainingRefused, 422),
    (errors.NoChampion, 503),
    (errors.StoreUnavailable, 503),
    (errors.RegistryUnavailable, 503),
)


class BadRequest(errors.ClassifiError):
    """A request that is malformed for the HTTP API (missing field, wrong JSON)."""

    def __init__(self, message: str, *, code: str = "bad_request") -> None:
        super().__init__(message)
        self.code = code


def error_response(status: int, code: str, message: str) -> tuple[Response, int]:
    return jsonify({"error": {"code": code, "message": message}}), status


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def status_of(error: errors.ClassifiError) -> int:
    if isinstance(error, BadRequest):
        return 400
    return next((status for cls, status in STATUS_BY_ERROR if isinstance(error, cls)), 500)


def code_of(error: errors.ClassifiError) -> str:
    if isinstance(error, BadRequest):
        return error.code
    if isinstance(error, errors.InvalidImage):
        return error.reason
    return _snake(type(error).__name__)


def describe(error: errors.ClassifiError) -> dict[str, str]:
    """The ``{"code", "message"}`` body of an error, also used inline in batch answers."""
    return {"code": code_of(error), "message": str(error)}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(errors.ClassifiError)
    def classifi_error(error: errors.ClassifiError) -> tuple[Response, int]:
        status = status_of(error)
        if status >= 500:
            log.error("request failed: %s", error, exc_info=error)
        response, status = error_response(status, **describe(error))
        if status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response, status

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response, int]:
        status = error.code or 500
        code = _snake((error.name or "error").replace(" ", ""))
        response, status = error_response(status, code, error.description or error.name)
        for name, value in error.get_headers():
            if name.lower() not in ("content-type", "content-length"):
                response.headers[name] = value
        return response, status

    @app.errorhandler(RequestEntityTooLarge)
    def body_too_large(error: RequestEntityTooLarge) -> tuple[Response, int]:
        limit = request.max_content_length or 0
        return error_response(
            413,
            "too_large",
            f"The request body is over {limit / 1e6:.1f} MB: each photo may be at most "
            "max_upload_bytes (setting) plus room for the form.",
        )

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception) -> tuple[Response, int]:
        log.exception("unexpected error while answering a request")
        return error_response(
            500, "internal_error", "The server failed to answer; the error is in its log."
        )
