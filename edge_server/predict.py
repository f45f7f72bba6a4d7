"""Classification routes: one photo (micro-batched with concurrent requests) or several."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from core import metrics
from core.errors import ClassifiError
from core.imaging import check_photo
from core.model.prediction import Prediction
from edge_server.auth import check_api_key
from edge_server.errors import describe
from edge_server.services import current
from edge_server.uploads import body_limit, many_photos, one_photo

bp = Blueprint("predict", __name__)


@bp.before_request
def require_api_key() -> None:
    check_api_key(current().settings)


def _count(predictions: list[Prediction]) -> None:
    for prediction in predictions:
        metrics.PREDICTIONS.labels(prediction.label).inc()
        metrics.CONFIDENCE.observe(prediction.confidence)


@bp.post("/predict")
def predict_one() -> ResponseReturnValue:
    services = current()
    upload = one_photo(services.settings)
    photo = check_photo(upload.data, services.settings)
    services.refresh_model()  # picks up a champion promoted by another process
    prediction = services.batcher.submit(photo.image)
    _count([prediction])
    return jsonify(prediction.to_dict())


@bp.post("/predict/batch")
def predict_batch() -> ResponseReturnValue:
    services = current()
    settings = services.settings
    request.max_content_length = body_limit(settings, settings.max_batch_files)
    uploads = many_photos(settings)

    results: list[dict[str, Any]] = []
    good: list[tuple[int, Any]] = []
    for index, upload in enumerate(uploads):
        try:
            good.append((index, check_photo(upload.data, settings).image))
            results.append({"filename": upload.filename})
        except ClassifiError as exc:  # one bad file does not spoil the others
            results.append({"filename": upload.filename, "error": describe(exc)})
    if good:
        services.refresh_model()
        predictions = services.predictor.predict([image for _, image in good])
        _count(predictions)
        for (index, _), prediction in zip(good, predictions, strict=True):
            results[index].update(prediction.to_dict())
    return jsonify({"results": results})


@bp.get("/model")
def model() -> ResponseReturnValue:
    """The champion being served: the same fields as one item of ``GET /models``."""
    return jsonify(current().refresh_model().to_dict())
