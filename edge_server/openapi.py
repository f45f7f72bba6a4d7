"""``GET /openapi.json``: the OpenAPI 3 description of every route (a test keeps it in step)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

bp = Blueprint("openapi", __name__)

ERROR = {"$ref": "#/components/schemas/Error"}
JSON = "application/json"


def _answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema or {"type": "object"}}}}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "Bad request (corrupt image, missing field, unknown label)",
        401: "Missing or wrong credentials",
        404: "Not found",
        409: "Conflicts with the current state",
        413: "Over the byte or pixel limit",
        415: "Not a supported image (judged by content)",
        503: "Not ready (no champion model, or a store does not answer)",
    }
    return {str(status): _answer(reasons[status], ERROR) for status in statuses}


def _operation(
    summary: str,
    responses: dict[str, Any],
    *,
    tag: str,
    body: dict[str, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    admin: bool = False,
    keyed: bool = False,
) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if body is not None:
        operation["requestBody"] = {"required": True, "content": body}
    if parameters:
        operation["parameters"] = parameters
    if admin:
        operation["security"] = [{"adminToken": []}]
    elif keyed:  # only enforced off loopback when keys are configured
        operation["security"] = [{}, {"apiKey": []}, {"bearerApiKey": []}]
    return operation


def _admin_operation(
    summary: str, responses: dict[str, Any], *statuses: int, **details: Any
) -> dict[str, Any]:
    """An admin route: bearer token, 401 without it, plus the given error statuses."""
    return _operation(
        summary, responses | _errors(401, *statuses), tag="admin", admin=True, **details
    )


def _multipart(fields: dict[str, Any], required: list[str]) -> dict[str, Any]:
    schema = {"type": "object", "properties": fields, "required": required}
    return {"multipart/form-data": {"schema": schema}}


BINARY = {"type": "string", "format": "binary"}
PHOTO_ID = {"name": "photo_id", "in": "path", "required": True, "schema": {"type": "integer"}}
VERSION = {"name": "version", "in": "path", "required": True, "schema": {"type": "integer"}}
REVIEW = {
    "type": "object",
    "properties": {
        "action": {"type": "string", "enum": ["approve", "reject"]},
        "label": {"type": "string", "description": "Corrected label (approve only)."},
    },
    "required": ["action"],
}

PATHS: dict[str, dict[str, Any]] = {
    "/predict": {
        "post": _operation(
            "Classify one photo (multipart field `file`, or a raw image body).",
            {"200": _answer("The prediction", {"$ref": "#/components/schemas/Prediction"})}
            | _errors(400, 401, 413, 415, 503),
            tag="predict",
            keyed=True,
            body=_multipart({"file": BINARY}, ["file"]) | {"image/*": {"schema": BINARY}},
        )
    },
    "/predict/batch": {
        "post": _operation(
            "Classify several photos (repeated field `files`); per-file errors inline.",
            {"200": _answer("One result per file, in order")} | _errors(400, 401, 413, 415, 503),
            tag="predict",
            keyed=True,
            body=_multipart({"files": {"type": "array", "items": BINARY}}, ["files"]),
        )
    },
    "/model": {
        "get": _operation(
            "The champion model: version, backbone, labels, metrics.",
            {"200": _answer("The champion")} | _errors(401, 503),
            tag="predict",
            keyed=True,
        )
    },
    "/submissions": {
        "post": _operation(
            "Submit a photo with a proposed label for review.",
            {"201": _answer("Stored as pending"), "200": _answer("A duplicate, not stored again")}
            | _errors(400, 401, 413, 415),
            tag="submissions",
            keyed=True,
            body=_multipart(
                {"file": BINARY, "label": {"type": "string"}, "submitter": {"type": "string"}},
                ["file", "label"],
            ),
        )
    },
    "/check_duplicate": {
        "post": _operation(
            'Whether a photo is already known: {"status": "known"|"new"} (the seed\'s route).',
            {"200": _answer("known or new")} | _errors(400, 401, 413, 415),
            tag="submissions",
            keyed=True,
            body=_multipart({"file": BINARY}, ["file"]),
        )
    },
    "/admin/submissions": {
        "get": _admin_operation(
            "List the pending submissions, most useful first.",
            {"200": _answer("The submissions")},
            400,
            parameters=[
                {"name": "status", "in": "query", "schema": {"type": "string"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                {"name": "offset", "in": "query", "schema": {"type": "integer"}},
            ],
        )
    },
    "/admin/submissions/{photo_id}/image": {
        "get": _admin_operation(
            "The submitted photo's bytes.",
            {"200": {"description": "The photo", "content": {"image/*": {"schema": BINARY}}}},
            404,
            parameters=[PHOTO_ID],
        )
    },
    "/admin/submissions/{photo_id}/review": {
        "post": _admin_operation(
            "Approve (with the proposed or a corrected label) or reject one submission.",
            {"200": _answer("The decision")},
            400,
            404,
            409,
            parameters=[PHOTO_ID],
            body={JSON: {"schema": REVIEW}},
        )
    },
    "/admin/submissions/review": {
        "post": _admin_operation(
            "Approve or reject several submissions: {ids: [...], action, label?}.",
            {"200": _answer("One decision per id")},
            400,
            body={
                JSON: {
                    "schema": {
                        "allOf": [
                            REVIEW,
                            {
                                "type": "object",
                                "properties": {
                                    "ids": {"type": "array", "items": {"type": "integer"}}
                                },
                                "required": ["ids"],
                            },
                        ]
                    }
                }
            },
        )
    },
    "/admin/submissions/undo": {
        "post": _admin_operation(
            "Undo the admin's last review decision: the photo is pending again.",
            {"200": _answer("The undo")},
            404,
            409,
        )
    },
    "/admin/audit": {
        "get": _admin_operation(
            "The audit log, newest first: who decided what and when.",
            {"200": _answer("The entries")},
            400,
            parameters=[{"name": "limit", "in": "query", "schema": {"type": "integer"}}],
        )
    },
    "/models": {
        "get": _admin_operation(
            "Every model version with its metrics, state and dates.",
            {"200": _answer("The versions")},
        )
    },
    "/admin/models/{version}/promote": {
        "post": _admin_operation(
            "Make a version the champion.",
            {"200": _answer("The new champion")},
            404,
            409,
            parameters=[VERSION],
        )
    },
    "/admin/models/rollback": {
        "post": _admin_operation(
            "Make the previous champion the champion again.",
            {"200": _answer("The restored champion")},
            409,
        )
    },
    "/admin/retrain": {
        "post": _admin_operation(
            "Queue a retrain on the worker (never runs in the request).",
            {"202": _answer("Queued, with the task id")},
        )
    },
    "/admin/retrain/{task_id}": {
        "get": _admin_operation(
            "A queued retrain's status: pending, finished (with the result) or failed.",
            {"200": _answer("The status")},
            parameters=[
                {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
        )
    },
    "/health/live": {
        "get": _operation("The process answers.", {"200": _answer("alive")}, tag="health")
    },
    "/health/ready": {
        "get": _operation(
            "Ready: champion loaded, registry and store answer.",
            {"200": _answer("ready"), "503": _answer("not ready, with the reason", ERROR)},
            tag="health",
        )
    },
    "/metrics": {
        "get": _operation(
            "Prometheus metrics (text exposition format).",
            {"200": {"description": "Metrics", "content": {"text/plain": {"schema": {}}}}},
            tag="health",
        )
    },
    "/usage": {
        "post": _operation(
            "A client reports usage events (the desktop in remote mode).",
            {"200": _answer("Counted")} | _errors(400, 401),
            tag="health",
            keyed=True,
            body={
                JSON: {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "event": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,63}$"},
                            "count": {"type": "integer", "minimum": 1},
                        },
                        "required": ["event"],
                    }
                }
            },
        )
    },
    "/openapi.json": {
        "get": _operation("This document.", {"200": _answer("OpenAPI 3")}, tag="health")
    },
}

COMPONENTS: dict[str, Any] = {
    "schemas": {
        "Error": {
            "type": "object",
            "properties": {
                "error": {
                    "type": "object",
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                    "required": ["code", "message"],
                }
            },
            "required": ["error"],
        },
        "Prediction": {
            "type": "object",
            "properties": {
                "prediction": {"type": "string", "example": "dandelion"},
                "confidence": {"type": "number", "example": 0.97},
                "probabilities": {
                    "type": "object",
                    "additionalProperties": {"type": "number"},
                },
                "model_version": {"type": "integer"},
                "backbone": {"type": "string"},
            },
            "required": ["prediction", "confidence", "probabilities", "model_version", "backbone"],
        },
    },
    "securitySchemes": {
        "adminToken": {"type": "http", "scheme": "bearer"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        "bearerApiKey": {"type": "http", "scheme": "bearer"},
    },
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "ClassifiImage edge server",
            "version": "1",
            "description": "Classify photos, submit corrections, review them, manage models.",
        },
        "paths": PATHS,
        "components": COMPONENTS,
    }


@bp.get("/openapi.json")
def openapi_json() -> ResponseReturnValue:
    return jsonify(document())
