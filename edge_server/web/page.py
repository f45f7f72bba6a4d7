"""The photo page (``/``): take or pick photos, see each one's label, propose a better one.

The routes follow the REST routes' key rule (:func:`edge_server.auth.require_device`, on the
key typed into the page or kept in its cookie, checked before the view by the blueprint) and
call the process's services for classifying and submitting.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from flask import make_response, redirect, request, url_for
from flask.typing import ResponseReturnValue

from core.errors import BadRequest, ClassifiError
from core.metrics import WebEvent, count_web_event
from core.wire import Prediction, Submission
from edge_server.auth import keys_required, request_device
from edge_server.services import current
from edge_server.uploads import Upload, many_photos, one_photo
from edge_server.web.blueprint import bp, page
from edge_server.web.security import (
    API_KEY_COOKIE,
    API_KEY_FIELD,
    forget_api_key,
    remember_api_key,
)

PHOTOS_FIELD = "photos"
PHOTO_FIELD = "photo"


@dataclass(frozen=True)
class PhotoResult:
    """What the page shows for one photo: its prediction, or why it could not be read."""

    index: int  # its place in the upload, which the script matches to the file it sent
    filename: str
    prediction: Prediction | None = None
    error: str | None = None
    unsure: bool = False
    out_of_distribution: bool = False
    heatmap: str | None = None  # a data: URL

    @classmethod
    def of(cls, index: int, upload: Upload, result: Prediction | ClassifiError) -> PhotoResult:
        if not isinstance(result, Prediction):
            return cls(index, upload.filename, error=str(result))
        return cls(
            index,
            upload.filename,
            prediction=result,
            unsure=result.unsure,
            out_of_distribution=result.out_of_distribution,
            heatmap=_image_url(result.heatmap),
        )


def _image_url(image: object) -> str | None:
    """A PNG (bytes, base64 text or already a data: URL) as an ``<img src>``."""
    if isinstance(image, bytes):
        image = base64.b64encode(image).decode("ascii")
    if not isinstance(image, str) or not image:
        return None
    return image if image.startswith("data:image/") else f"data:image/png;base64,{image}"


def key_context() -> dict[str, Any]:
    """Whether the page must ask for an API key, and whether this browser has one saved."""
    return {
        "key_needed": keys_required(current().settings),
        "key_saved": API_KEY_COOKIE in request.cookies,
    }


def typed_key() -> str | None:
    """The key typed into this form (already accepted), for the browser to remember."""
    return request.form.get(API_KEY_FIELD, "").strip() or None


def _with_key(answer: Any, key: str | None) -> ResponseReturnValue:
    response = make_response(answer)
    if key is not None:
        remember_api_key(response, key)
    return response


def _chosen(field: str) -> list[str]:
    """The file names sent in ``field``, one per part, "" for a file input left empty (a
    browser sends one for each); refused when no photo was chosen at all."""
    names = [storage.filename or "" for storage in request.files.getlist(field)]
    if not any(names):
        raise BadRequest("Take or choose a photo first.", code="missing_field")
    return names


@bp.get("/")
def photo_page() -> ResponseReturnValue:
    count_web_event(WebEvent.PAGE_VIEW)
    return page("page.html", **key_context())


@bp.post("/classify")
def classify() -> ResponseReturnValue:
    count_web_event(WebEvent.PREDICT)
    services = current()
    names = _chosen(PHOTOS_FIELD)  # the camera's input and the gallery's share the field
    sent = many_photos(services.settings, PHOTOS_FIELD)
    uploads = [upload for upload, name in zip(sent, names, strict=True) if name]
    answers = services.classify_many([upload.data for upload in uploads])
    results = [
        PhotoResult.of(index, upload, answer)
        for index, (upload, answer) in enumerate(zip(uploads, answers, strict=True))
    ]
    answer = page("page.html", "_results.html", results=results, **key_context())
    return _with_key(answer, typed_key())


@bp.post("/propose")
def propose() -> ResponseReturnValue:
    """That's wrong: the photo goes for review with the label proposed."""
    count_web_event(WebEvent.PROPOSE_LABEL)
    services = current()
    label = request.form.get("label", "")
    if label not in services.settings.labels:
        raise BadRequest(
            f"Choose the right label: one of {', '.join(services.settings.labels)}.",
            code="missing_field",
        )
    _chosen(PHOTO_FIELD)
    upload = one_photo(services.settings, PHOTO_FIELD)
    submission: Submission = services.submit(
        upload.data, label, source=f"web:{upload.filename}"[:512], submitted_by=request_device()
    )
    answer = page(
        "proposed.html",
        "_proposed.html",
        submission=submission,
        label=label,
        filename=upload.filename,
        **key_context(),
    )
    return _with_key(answer, typed_key())


@bp.post("/forget-key")
def forget_key() -> ResponseReturnValue:
    response = make_response(redirect(url_for("web.photo_page"), code=303))
    forget_api_key(response)
    return response
