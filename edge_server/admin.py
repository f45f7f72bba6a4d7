"""Admin routes (``Authorization: Bearer <admin token>``): review, models, retrain."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue

from core import metrics
from core.errors import ModelError
from core.loop import models_admin, review
from edge_server.auth import admin_required
from edge_server.errors import BadRequest
from edge_server.services import current

bp = Blueprint("admin", __name__)

ACTOR = "edge-admin"
MAX_LIST = 500


def json_object() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest('Send a JSON object, e.g. {"action": "approve"}.', code="invalid_json")
    return body


def _int_arg(name: str, default: int, maximum: int) -> int:
    raw = request.args.get(name, str(default))
    if not raw.isdigit() or int(raw) > maximum:
        raise BadRequest(f"'{name}' must be a whole number from 0 to {maximum}.")
    return int(raw)


def _decide(photo_ids: list[int], body: dict[str, Any]) -> list[dict[str, Any]]:
    services = current()
    action, label = body.get("action"), body.get("label")
    if label is not None and not isinstance(label, str):
        raise BadRequest("'label' must be a string.")
    if action == "approve":
        decisions = review.approve(
            services.settings,
            services.registry,
            services.store,
            photo_ids,
            actor=ACTOR,
            label=label,
        )
        for decision in decisions:
            corrected = decision.new_label != decision.old_label
            metrics.REVIEWS.labels("corrected" if corrected else "approved").inc()
    elif action == "reject":
        if label is not None:
            raise BadRequest("A rejection takes no label.")
        decisions = review.reject(
            services.settings, services.registry, services.store, photo_ids, actor=ACTOR
        )
        metrics.REVIEWS.labels("rejected").inc(len(decisions))
    else:
        raise BadRequest("'action' must be 'approve' or 'reject'.", code="invalid_action")
    return [decision.to_dict() for decision in decisions]


@bp.get("/admin/submissions")
@admin_required
def list_submissions() -> ResponseReturnValue:
    status = request.args.get("status", "pending")
    if status != "pending":
        raise BadRequest("Only status=pending can be listed: the others are not awaiting review.")
    pending = review.list_pending(
        current().registry,
        limit=_int_arg("limit", 100, MAX_LIST),
        offset=_int_arg("offset", 0, 10**9),
    )
    return jsonify({"submissions": [photo.to_dict() for photo in pending]})


@bp.get("/admin/submissions/<int:photo_id>/image")
@admin_required
def submission_image(photo_id: int) -> ResponseReturnValue:
    services = current()
    data, content_type = review.photo_image(services.registry, services.store, photo_id)
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
    if not isinstance(ids, list) or not ids or not all(type(i) is int for i in ids):
        raise BadRequest("'ids' must be a non-empty list of photo ids.", code="invalid_ids")
    return jsonify({"decisions": _decide(ids, body)})


@bp.post("/admin/submissions/undo")
@admin_required
def undo() -> ResponseReturnValue:
    """Undo the admin's last review decision not undone yet: the photo is pending again."""
    services = current()
    decision = review.undo_last(services.settings, services.registry, services.store, actor=ACTOR)
    return jsonify(decision.to_dict())


@bp.get("/admin/audit")
@admin_required
def audit() -> ResponseReturnValue:
    """Who decided what and when, newest first."""
    return jsonify(
        {"entries": review.audit_log(current().registry, _int_arg("limit", 100, MAX_LIST))}
    )


@bp.get("/models")
@admin_required
def list_models() -> ResponseReturnValue:
    return jsonify({"models": [m.to_dict() for m in models_admin.list_models(current().registry)]})


@bp.post("/admin/models/<int:version>/promote")
@admin_required
def promote(version: int) -> ResponseReturnValue:
    services = current()
    chosen = models_admin.promote(
        services.settings, services.registry, services.store, version, actor=ACTOR
    )
    services.predictor.refresh(force=True)  # this process serves it at once; others soon
    return jsonify(chosen.to_dict())


@bp.post("/admin/models/rollback")
@admin_required
def rollback() -> ResponseReturnValue:
    services = current()
    chosen = models_admin.rollback(
        services.settings, services.registry, services.store, actor=ACTOR
    )
    services.predictor.refresh(force=True)
    return jsonify(chosen.to_dict())


@bp.post("/admin/retrain")
@admin_required
def retrain() -> ResponseReturnValue:
    """Queue a retrain on the worker; the request never trains."""
    from worker.tasks import enqueue_retrain  # the worker's task module, as huey documents

    task_id = enqueue_retrain(current().settings, actor=ACTOR)
    return jsonify({"task_id": task_id, "status": "queued"}), 202


@bp.get("/admin/retrain/<task_id>")
@admin_required
def retrain_status(task_id: str) -> ResponseReturnValue:
    """A queued retrain: pending (waiting, running or unknown), finished, or failed."""
    from worker.tasks import task_result

    try:
        result = task_result(current().settings, task_id)
    except ModelError as exc:
        failure = {"code": "task_failed", "message": str(exc)}
        return jsonify({"task_id": task_id, "status": "failed", "error": failure})
    status = "pending" if result is None else "finished"
    return jsonify({"task_id": task_id, "status": status, "result": result})
