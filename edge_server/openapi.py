"""``GET /openapi.json``: the OpenAPI 3.1 description of every route.

The component schemas are generated from the wire models (``core.wire``) and the error shape
the routes answer with, so the document cannot disagree with the answers; the paths below say
only which route answers what. A test checks the paths against the URL map and real answers
against their schemas.
"""

from __future__ import annotations

import enum
from functools import cache
from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from core.wire import (
    WIRE_MODELS,
    AuditRecord,
    Duplicate,
    LabelIssue,
    ModelSummary,
    PairedDevice,
    PairingRequest,
    PendingPhoto,
    Prediction,
    ReviewAction,
    ReviewDecision,
    SimilarPhoto,
    Submission,
    TaskState,
    Usage,
    UsageEvent,
)
from edge_server.errors import ErrorAnswer, ErrorDetail

bp = Blueprint("openapi", __name__)

JSON = "application/json"
REF_TEMPLATE = "#/components/schemas/{model}"
STRING = {"type": "string"}
INTEGER = {"type": "integer"}
BINARY = {"type": "string", "contentMediaType": "application/octet-stream"}


def ref(schema: type[BaseModel | enum.Enum]) -> dict[str, str]:
    return {"$ref": REF_TEMPLATE.format(model=schema.__name__)}


def component_schemas() -> dict[str, Any]:
    """The JSON schema of every wire model (as the server writes it) and of the error shape."""
    mode: JsonSchemaMode = "serialization"  # as the server writes them: computed fields too
    described: tuple[type[BaseModel], ...] = (*WIRE_MODELS, ErrorAnswer)
    models = [(model, mode) for model in described]
    _, top = models_json_schema(models, by_alias=True, ref_template=REF_TEMPLATE)
    schemas: dict[str, Any] = top["$defs"]
    return schemas


def _object(**properties: Any) -> dict[str, Any]:
    """An object with exactly these (required) properties: the routes' envelopes."""
    return {"type": "object", "properties": properties, "required": list(properties)}


def _list_of(model: type[BaseModel]) -> dict[str, Any]:
    return {"type": "array", "items": ref(model)}


def _answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


ERROR_REASONS = {
    400: "Bad request (corrupt image, missing field, unknown label)",
    401: "Missing or wrong credentials",
    404: "Not found",
    409: "Conflicts with the current state",
    413: "Over the byte or pixel limit",
    415: "Not a supported image (judged by content)",
    429: "Too many requests from this address or key (see Retry-After), or too many pending",
    503: "Not ready: no champion, the model is loading (see Retry-After), or a store is down",
    507: "The server keeps no more submissions: its queue or its disk is full",
}


def _operation(
    summary: str,
    responses: dict[int, dict[str, Any]],
    *,
    errors: tuple[int, ...] = (),
    tag: str,
    body: dict[str, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    admin: bool = False,
    keyed: bool = False,
    body_required: bool = True,
) -> dict[str, Any]:
    # Every route is rate-limited (edge_server.limits).
    answers = responses | {
        status: _answer(ERROR_REASONS[status], ref(ErrorAnswer)) for status in (*errors, 429)
    }
    operation: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "responses": {str(status): answer for status, answer in sorted(answers.items())},
    }
    if body is not None:
        operation["requestBody"] = {"required": body_required, "content": body}
    if parameters:
        operation["parameters"] = parameters
    if admin:
        operation["security"] = [{"adminToken": []}]
    elif keyed:  # needed off loopback unless allow_anonymous; a key sent is always checked
        operation["security"] = [{}, {"apiKey": []}, {"bearerApiKey": []}]
    return operation


def _admin(
    summary: str,
    responses: dict[int, dict[str, Any]],
    *,
    errors: tuple[int, ...] = (),
    **details: Any,
) -> dict[str, Any]:
    """An admin route: bearer token, 401 without it, plus the given error statuses."""
    return _operation(summary, responses, errors=(401, *errors), tag="admin", admin=True, **details)


def _multipart(required: list[str], **fields: Any) -> dict[str, Any]:
    return {
        "multipart/form-data": {
            "schema": {"type": "object", "properties": fields, "required": required}
        }
    }


def _path_parameter(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query_parameter(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema}


PHOTO_ID = _path_parameter("photo_id", INTEGER)
SUBMITTER = {"type": "string", "description": "Who submits; a device key's name wins over it."}
REVIEW = {
    "type": "object",
    "properties": {
        "action": {"enum": [action.value for action in ReviewAction]},
        "label": {"type": "string", "description": "Corrected label (approve only)."},
    },
    "required": ["action"],
}
BATCH_RESULT = {
    "oneOf": [
        {"allOf": [_object(filename=STRING), ref(Prediction)]},
        _object(filename=STRING, error=ref(ErrorDetail)),
    ]
}
READINESS = {
    "type": "object",
    "properties": {
        "status": {"enum": ["ready", "unavailable"]},
        "checks": {"type": "object", "additionalProperties": STRING},
        "error": ref(ErrorDetail),
    },
    "required": ["status", "checks"],
}

PATHS: dict[str, dict[str, Any]] = {
    "/predict": {
        "post": _operation(
            "Classify one photo (multipart field `file`, or a raw image body); `explain=1` "
            "adds its heatmap.",
            {200: _answer("The prediction", ref(Prediction))},
            errors=(400, 401, 413, 415, 503),
            tag="predict",
            keyed=True,
            body=_multipart(["file"], file=BINARY) | {"image/*": {"schema": BINARY}},
            parameters=[_query_parameter("explain", {"enum": ["0", "1"]})],
        )
    },
    "/predict/batch": {
        "post": _operation(
            "Classify several photos (repeated field `files`); per-file errors inline.",
            {
                200: _answer(
                    "One result per file, in order",
                    _object(results={"type": "array", "items": BATCH_RESULT}),
                )
            },
            errors=(400, 401, 413, 415, 503),
            tag="predict",
            keyed=True,
            body=_multipart(["files"], files={"type": "array", "items": BINARY}),
        )
    },
    "/model": {
        "get": _operation(
            "The model being served: version, backbone, labels, metrics.",
            {200: _answer("The champion", ref(ModelSummary))},
            errors=(401, 503),
            tag="predict",
            keyed=True,
        )
    },
    "/submissions": {
        "post": _operation(
            "Submit a photo with a proposed label for review.",
            {
                201: _answer("Stored as pending", ref(Submission)),
                200: _answer("An exact duplicate, not stored again", ref(Submission)),
            },
            errors=(400, 401, 413, 415, 507),
            tag="submissions",
            keyed=True,
            body=_multipart(["file", "label"], file=BINARY, label=STRING, submitter=SUBMITTER),
        )
    },
    "/check_duplicate": {
        "post": _operation(
            'Whether a photo is already known: {"status": "known"|"new"} (the seed\'s route).',
            {
                200: _answer(
                    "known or new",
                    _object(
                        status={"enum": ["known", "new"]},
                        sha256=STRING,
                        duplicate={"anyOf": [ref(Duplicate), {"type": "null"}]},
                    ),
                )
            },
            errors=(400, 401, 413, 415),
            tag="submissions",
            keyed=True,
            body=_multipart(["file"], file=BINARY),
        )
    },
    "/admin/submissions": {
        "get": _admin(
            "List the pending submissions, most useful first.",
            {200: _answer("The submissions", _object(submissions=_list_of(PendingPhoto)))},
            errors=(400,),
            parameters=[
                _query_parameter("status", {"enum": ["pending"]}),
                _query_parameter("limit", INTEGER),
                _query_parameter("offset", INTEGER),
            ],
        )
    },
    "/admin/submissions/{photo_id}/image": {
        "get": _admin(
            "The submitted photo's bytes.",
            {200: {"description": "The photo", "content": {"image/*": {"schema": BINARY}}}},
            errors=(404,),
            parameters=[PHOTO_ID],
        )
    },
    "/admin/submissions/{photo_id}/review": {
        "post": _admin(
            "Approve (with the proposed or a corrected label) or reject one submission.",
            {200: _answer("The decision", ref(ReviewDecision))},
            errors=(400, 404, 409),
            parameters=[PHOTO_ID],
            body={JSON: {"schema": REVIEW}},
        )
    },
    "/admin/submissions/review": {
        "post": _admin(
            "Approve or reject several submissions, all or none: {ids: [...], action, label?}.",
            {200: _answer("One decision per id", _object(decisions=_list_of(ReviewDecision)))},
            errors=(400, 404, 409),
            body={
                JSON: {
                    "schema": {"allOf": [REVIEW, _object(ids={"type": "array", "items": INTEGER})]}
                }
            },
        )
    },
    "/admin/submissions/undo": {
        "post": _admin(
            "Undo the admin's last review decision: the photo is pending again.",
            {200: _answer("The undo", ref(ReviewDecision))},
            errors=(404, 409),
        )
    },
    "/admin/photos/{photo_id}/similar": {
        "get": _admin(
            "The photos nearest to this one, nearest first (pending_only: the review's).",
            {200: _answer("The similar photos", _object(similar=_list_of(SimilarPhoto)))},
            errors=(400, 404, 409, 503),
            parameters=[
                PHOTO_ID,
                _query_parameter("limit", INTEGER),
                _query_parameter("pending_only", {"type": "string", "enum": ["true", "false"]}),
            ],
        )
    },
    "/admin/label-audit": {
        "get": _admin(
            "Training photos whose label looks wrong, most suspicious first (cleanlab).",
            {200: _answer("The suspected mislabels", _object(issues=_list_of(LabelIssue)))},
            errors=(409,),
        )
    },
    "/admin/label-audit/{photo_id}": {
        "post": _admin(
            "Relabel a training photo, or remove it from training (audited).",
            {200: _answer("The decision", ref(ReviewDecision))},
            errors=(400, 404, 409),
            parameters=[PHOTO_ID],
            body={
                JSON: {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "action": {"enum": ["relabel", "remove"]},
                            "label": {"type": "string", "description": "relabel only"},
                        },
                        "required": ["action"],
                    }
                }
            },
        )
    },
    "/admin/audit": {
        "get": _admin(
            "The audit log, newest first: who decided what and when.",
            {200: _answer("The entries", _object(entries=_list_of(AuditRecord)))},
            errors=(400,),
            parameters=[_query_parameter("limit", INTEGER)],
        )
    },
    "/models": {
        "get": _admin(
            "Every model version with its metrics, state and dates.",
            {200: _answer("The versions", _object(models=_list_of(ModelSummary)))},
        )
    },
    "/admin/models/{version}/promote": {
        "post": _admin(
            "Make a version the champion; it is served as soon as it has loaded.",
            {200: _answer("The new champion", ref(ModelSummary))},
            errors=(400, 404, 409),
            parameters=[_path_parameter("version", INTEGER)],
            body={JSON: {"schema": {"type": "object", "properties": {"reason": STRING}}}},
            body_required=False,
        )
    },
    "/admin/models/rollback": {
        "post": _admin(
            "Make the previous champion the champion again.",
            {200: _answer("The restored champion", ref(ModelSummary))},
            errors=(404, 409),
        )
    },
    "/admin/retrain": {
        "post": _admin(
            "Queue a retrain on the worker (never runs in the request).",
            {202: _answer("Queued: pending, with the task id", ref(TaskState))},
        )
    },
    "/admin/retrain/{task_id}": {
        "get": _admin(
            "A queued retrain's status: pending, finished (with the result) or failed.",
            {200: _answer("The status", ref(TaskState))},
            parameters=[_path_parameter("task_id", STRING)],
        )
    },
    "/health/live": {
        "get": _operation(
            "The process answers.",
            {200: _answer("alive", _object(status={"const": "alive"}))},
            tag="health",
        )
    },
    "/health/ready": {
        "get": _operation(
            "Ready: champion loaded, registry and store answer.",
            {
                200: _answer("ready", READINESS),
                503: _answer("not ready, with the reason", READINESS),
            },
            tag="health",
        )
    },
    "/metrics": {
        "get": _operation(
            "Prometheus metrics (text exposition format).",
            {200: {"description": "Metrics", "content": {"text/plain": {"schema": STRING}}}},
            tag="health",
        )
    },
    "/usage": {
        "post": _operation(
            "A client reports usage events (the desktop in remote mode): a fixed vocabulary.",
            {200: _answer("Counted", _object(event=ref(UsageEvent), counted=INTEGER))},
            errors=(400, 401),
            tag="health",
            keyed=True,
            body={JSON: {"schema": ref(Usage)}},
        )
    },
    "/pair": {
        "post": _operation(
            "Trade a one-time pairing code (`classifi keys pair`) for a device key of its own.",
            {201: _answer("The new device key, shown this once", ref(PairedDevice))},
            errors=(400, 401, 409),
            tag="devices",
            body={JSON: {"schema": ref(PairingRequest)}},
        )
    },
    "/openapi.json": {
        "get": _operation(
            "This document.", {200: _answer("OpenAPI 3.1", {"type": "object"})}, tag="health"
        )
    },
}


@cache
def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ClassifiImage edge server",
            "version": "1",
            "description": "Classify photos, submit corrections, review them, manage models.",
        },
        "paths": PATHS,
        "components": {
            "schemas": component_schemas(),
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearerApiKey": {"type": "http", "scheme": "bearer"},
            },
        },
    }


@bp.get("/openapi.json")
def openapi_json() -> ResponseReturnValue:
    return jsonify(document())
