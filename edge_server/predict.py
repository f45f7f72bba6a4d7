"""Classification routes: one photo (micro-batched with concurrent requests) or several."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from core.errors import BadRequest
from core.wire import Prediction
from edge_server.auth import require_device
from edge_server.errors import describe
from edge_server.services import current
from edge_server.uploads import body_limit, many_photos, one_photo

bp = Blueprint("predict", __name__)


@bp.before_request
def require_key() -> None:
    require_device()


@bp.post("/predict")
def predict_one() -> ResponseReturnValue:
    """``?explain=1`` adds the heatmap (a PNG, base64) of where the model found its label."""
    services = current()
    data = one_photo(services.settings).data
    explain = request.args.get("explain", "0")
    if explain not in ("0", "1"):
        raise BadRequest("'explain' must be 0 or 1.")
    prediction = services.explain_one(data) if explain == "1" else services.classify_one(data)
    return jsonify(prediction.to_dict())


@bp.post("/predict/batch")
def predict_batch() -> ResponseReturnValue:
    """One result per file, in order; a bad file gets its error inline and spoils no other."""
    services = current()
    request.max_content_length = body_limit(services.settings, services.settings.max_batch_files)
    uploads = many_photos(services.settings)
    answers: list[dict[str, Any]] = []
    for upload, result in zip(
        uploads, services.classify_many([upload.data for upload in uploads]), strict=True
    ):
        if isinstance(result, Prediction):
            answers.append({"filename": upload.filename, **result.to_dict()})
        else:
            answers.append({"filename": upload.filename, "error": describe(result).to_dict()})
    return jsonify({"results": answers})


@bp.get("/model")
def model() -> ResponseReturnValue:
    """The champion being served: the same fields as one item of ``GET /models``."""
    return jsonify(current().served_model().to_dict())
