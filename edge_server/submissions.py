"""Submissions: a photo with a proposed label, stored as pending for review."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from core import metrics
from core.errors import BadRequest, ClassifiError
from edge_server.auth import request_device, require_device
from edge_server.services import current
from edge_server.uploads import one_photo

bp = Blueprint("submissions", __name__)


@bp.before_request
def require_key() -> None:
    require_device()


@bp.post("/submissions")
def submit() -> ResponseReturnValue:
    services = current()
    try:
        upload = one_photo(services.settings)
        label = request.form.get("label", "").strip()
        if not label:
            raise BadRequest(
                f"The form field 'label' is missing: send one of {', '.join(services.settings.labels)}.",
                code="missing_field",
            )
    except ClassifiError:
        metrics.SUBMISSIONS.labels("refused").inc()
        raise
    # A keyed request is its device's: the per-submitter quota counts per key, whatever the
    # form says. Without a key (loopback, allow_anonymous) the form names the submitter.
    submitter = request_device() or (request.form.get("submitter") or "").strip()[:128] or None
    submission = services.submit(
        upload.data, label, source=f"edge:{upload.filename}"[:512], submitted_by=submitter
    )
    return jsonify(submission.to_dict()), 201 if submission.stored else 200


@bp.post("/check_duplicate")
def check_duplicate() -> ResponseReturnValue:
    """The seed's route: ``{"status": "known"}`` when these exact photo bytes are stored."""
    app = current().app
    photo = app.check_photo(one_photo(app.settings).data)
    duplicate = app.exact_duplicate(photo)
    return jsonify(
        {
            "status": "known" if duplicate else "new",
            "sha256": photo.sha256,
            "duplicate": duplicate.to_dict() if duplicate else None,
        }
    )
