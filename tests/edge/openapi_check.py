"""Answers checked against ``/openapi.json``: the status is documented for its route and a JSON
body validates against the documented schema (refs into ``#/components/schemas`` resolved)."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from werkzeug.exceptions import HTTPException
from werkzeug.test import TestResponse

from edge_server.openapi import document

DOCUMENT_URI = "urn:classifi:openapi"
JSON = "application/json"


@cache
def schema_registry() -> Registry[Any]:
    """The document as one resource, so that its ``#/components/...`` refs resolve."""
    resource = Resource.from_contents(document(), default_specification=DRAFT202012)
    return Registry().with_resource(DOCUMENT_URI, resource)


def pointer(*keys: str) -> str:
    """The JSON pointer to ``document()[keys[0]][keys[1]]...``."""
    return "".join("/" + key.replace("~", "~0").replace("/", "~1") for key in keys)


def validator(*keys: str) -> Draft202012Validator:
    """A validator for the schema at ``keys`` in the document."""
    return Draft202012Validator(
        {"$ref": DOCUMENT_URI + "#" + pointer(*keys)}, registry=schema_registry()
    )


def path_template(rule: str) -> str:
    """``/admin/models/<int:version>/promote`` -> ``/admin/models/{version}/promote``."""
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)


def check_answer(app: Flask, response: TestResponse) -> tuple[str, str, int]:
    """Fail unless ``response`` is documented for its route: ``(path, method, status)``."""
    method, status = response.request.method, str(response.status_code)
    try:
        rule, _ = app.url_map.bind("localhost").match(
            response.request.path, method, return_rule=True
        )
    except HTTPException:  # no such route or method: the generic handlers answered
        return ("", method, response.status_code)
    path = path_template(rule.rule)
    responses = document()["paths"][path][method.lower()]["responses"]
    assert status in responses, f"{method} {path} answered {status}: not documented"
    content = responses[status].get("content", {})
    if JSON in content:
        assert response.is_json, f"{method} {path} {status} answered {response.content_type}"
        schema = validator(
            "paths", path, method.lower(), "responses", status, "content", JSON, "schema"
        )
        errors = [error.message for error in schema.iter_errors(response.get_json())]
        assert not errors, f"{method} {path} {status}: {errors}"
    else:
        assert not response.is_json, f"{method} {path} {status}: JSON where none is documented"
    return path, method, response.status_code


class DocumentedClient(FlaskClient):
    """A test client that checks every answer against the OpenAPI document."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.checked: set[tuple[str, str, int]] = set()

    def open(self, *args: Any, **kwargs: Any) -> TestResponse:
        response = super().open(*args, **kwargs)
        if response.request.method not in ("OPTIONS", "HEAD"):
            self.checked.add(check_answer(self.application, response))
        return response
