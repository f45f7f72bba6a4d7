"""Admin routes (``Authorization: Bearer <admin token>``): review, models, retrain.

They call the process's app, which acts as ``edge-admin``: every decision is audited so.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.routing import IntegerConverter, Map

from core.errors import BadRequest, ModelError
from core.wire import RetrainOutcome, TaskState
from edge_server.auth import admin_required
from edge_server.services import ACTOR, current

bp = Blueprint("admin", __name__)

MAX_LIST = 500
#: The largest id the registry holds (PostgreSQL's INTEGER): a larger one names no row, and
#: must not reach the database, where it would overflow.
MAX_ID = 2**31 - 1


class RegistryId(IntegerConverter):
    """``<int:...>`` in this app's URLs: a whole number up to :data:`MAX_ID` (else 404)."""

    def __init__(self, url_map: Map, *args: Any, **kwargs: Any) -> None:
        super().__init__(url_map, *args, **{"max": MAX_ID, **kwargs})


def json_object() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest('Send a JSON object, e.g. {"action": "approve"}.', code="invalid_json")
    return body


def _only_query(*names: str) -> None:
    """Refuse a query parameter the route does not take: a typo ("limt") is said, not ignored."""
    unknown = sorted(set(request.args) - set(names))
    if unknown:
        raise BadRequest(
            f"Unknown query parameter {unknown[0]!r}: this route takes {', '.join(names)}."
        )


def _int_arg(name: str, default: int, maximum: int) -> int:
    raw = request.args.get(name, str(default))
    if not raw.isdigit() or int(raw) > maximum:
        raise BadRequest(f"'{name}' must be a whole number from 0 to {maximum}.")
    return int(raw)


def _is_id(value: object) -> bool:
    return type(value) is int and 0 <= value <= MAX_ID


def _decide(photo_ids: list[int], body: dict[str, Any]) -> list[dict[str, Any]]:
    action, label = str(body.get("action", "")), body.get("label")
    if label is not None and not isinstance(label, str):
        raise BadRequest("'label' must be a string.")
    return [decision.to_dict() for decision in current().review(photo_ids, action, label)]


@bp.get("/admin/submissions")
@admin_required
def list_submissions() -> ResponseReturnValue:
    _only_query("status", "limit", "offset")
    status = request.args.get("status", "pending")
    if status != "pending":
        raise BadRequest("Only status=pending can be listed: the others are not awaiting review.")
    pending = current().app.pending(
        limit=_int_arg("limit", 100, MAX_LIST), offset=_int_arg("offset", 0, 10**9)
    )
    return jsonify({"submissions": [photo.to_dict() for photo in pending]})


@bp.get("/admin/submissions/<int:photo_id>/image")
@admin_required
def submission_image(photo_id: int) -> ResponseReturnValue:
    data, content_type = current().app.photo_image(photo_id)
    return Response(data, content_type=content_type)


@bp.post("/admin/submissions/<int:photo_id>/review")
@admin_required
def review_one(photo_id: int) -> ResponseReturnValue:
    return jsonify(_decide([photo_id], json_object())[0])


@bp.post("/admin/submissions/review")
@admin_required
def review_many() -> ResponseReturnValue:
    body = json_object()
    ids = body.get("ids")
    if not isinstance(ids, list) or not ids or not all(_is_id(i) for i in ids):
        raise BadRequest("'ids' must be a non-empty list of photo ids.", code="invalid_ids")
    return jsonify({"decisions": _decide(ids, body)})


@bp.post("/admin/submissions/undo")
@admin_required
def undo() -> ResponseReturnValue:
    """Undo the admin's last review decision not undone yet: the photo is pending again."""
    (decision,) = current().app.undo()
    return jsonify(decision.to_dict())


@bp.get("/admin/photos/<int:photo_id>/similar")
@admin_required
def similar(photo_id: int) -> ResponseReturnValue:
    """The photos nearest to this one, nearest first; with ``pending_only=true`` only the
    pending ones (the review's "select similar", for one decision on them all)."""
    _only_query("limit", "pending_only")
    pending_only = request.args.get("pending_only", "false")
    if pending_only not in ("true", "false"):
        raise BadRequest("'pending_only' must be true or false.")
    found = current().app.similar(
        photo_id, limit=_int_arg("limit", 20, MAX_LIST), pending_only=pending_only == "true"
    )
    return jsonify({"similar": [item.to_dict() for item in found]})


@bp.get("/admin/label-audit")
@admin_required
def label_audit() -> ResponseReturnValue:
    """Training photos whose label looks wrong, most suspicious first (cleanlab)."""
    return jsonify({"issues": [issue.to_dict() for issue in current().app.audit_labels()]})


@bp.post("/admin/label-audit/<int:photo_id>")
@admin_required
def fix_label(photo_id: int) -> ResponseReturnValue:
    """``{"action": "relabel", "label": ...}`` or ``{"action": "remove"}`` (from training)."""
    body = json_object()
    action, label = body.get("action"), body.get("label")
    app = current().app
    if action == "relabel" and isinstance(label, str):
        return jsonify(app.relabel(photo_id, label).to_dict())
    if action == "remove" and label is None:
        return jsonify(app.remove_from_training(photo_id).to_dict())
    raise BadRequest(
        'Send {"action": "relabel", "label": "<label>"} or {"action": "remove"}.',
        code="invalid_action",
    )


@bp.get("/admin/audit")
@admin_required
def audit() -> ResponseReturnValue:
    """Who decided what and when, newest first."""
    _only_query("limit")
    records = current().app.audit_log(_int_arg("limit", 100, MAX_LIST))
    return jsonify({"entries": [record.to_dict() for record in records]})


@bp.get("/models")
@admin_required
def list_models() -> ResponseReturnValue:
    return jsonify({"models": [model.to_dict() for model in current().app.versions()]})


@bp.post("/admin/models/<int:version>/promote")
@admin_required
def promote(version: int) -> ResponseReturnValue:
    """Answers at once: this process serves the new champion as soon as it has loaded (in
    the background), the other workers within their refresh interval. An optional JSON
    body ``{"reason": "..."}`` goes into the champion history."""
    body = json_object() if request.content_length else {}
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 500):
        raise BadRequest("'reason' must be a text of at most 500 characters.")
    return jsonify(current().app.promote(version, reason=reason).to_dict())


@bp.post("/admin/models/rollback")
@admin_required
def rollback() -> ResponseReturnValue:
    return jsonify(current().app.rollback().to_dict())


@bp.post("/admin/retrain")
@admin_required
def retrain() -> ResponseReturnValue:
    """Queue a retrain on the worker; the request never trains."""
    from worker.tasks import enqueue_retrain  # the worker's task module, as huey documents

    task_id = enqueue_retrain(current().settings, actor=ACTOR)
    return jsonify(TaskState(task_id=task_id, status="pending").to_dict()), 202


@bp.get("/admin/retrain/<task_id>")
@admin_required
def retrain_status(task_id: str) -> ResponseReturnValue:
    """A queued retrain: pending (waiting, running or unknown), finished, or failed."""
    from worker.tasks import task_result

    try:
        result = task_result(current().settings, task_id)
    except ModelError as exc:  # the task failed on the worker (TaskFailed)
        return jsonify(TaskState(task_id=task_id, status="failed", error=str(exc)).to_dict())
    if result is None:
        return jsonify(TaskState(task_id=task_id, status="pending").to_dict())
    outcome = RetrainOutcome.from_dict(result)
    return jsonify(TaskState(task_id=task_id, status="finished", result=outcome).to_dict())
