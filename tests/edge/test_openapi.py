"""``/openapi.json``: valid OpenAPI 3.1, generated from the wire models, exactly the routes,
and every success answer of every route checked against its documented schema."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate
from PIL import Image

from core.wire import WIRE_MODELS
from edge_server.openapi import document
from tests.edge.conftest import EdgeApp
from tests.edge.openapi_check import DOCUMENT_URI, DocumentedClient, path_template, schema_registry
from tests.edge.photos import encode

pytestmark = pytest.mark.slow


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def test_the_document_is_valid_and_every_ref_resolves(edge: EdgeApp) -> None:
    served = edge.client().get("/openapi.json").get_json()
    assert served == document()
    validate(served)  # OpenAPI 3.1, its schemas JSON Schema 2020-12
    resolver = schema_registry().resolver(DOCUMENT_URI)
    found = set(refs(served))
    assert "#/components/schemas/Prediction" in found
    for ref in found:
        assert ref.startswith("#/components/schemas/"), ref
        assert resolver.lookup(ref).contents, ref
    # Generated from the wire models, not written by hand.
    schemas = served["components"]["schemas"]
    assert {model.__name__ for model in WIRE_MODELS} <= set(schemas)
    assert schemas["Prediction"]["required"] == [
        "prediction",
        "confidence",
        "probabilities",
        "model_version",
        "backbone",
        "unsure",
        "out_of_distribution",
    ]
    assert "heatmap" in schemas["Prediction"]["properties"]  # only when explain is asked
    assert "disagrees" in schemas["PendingPhoto"]["properties"]  # a computed field
    assert schemas["UsageEvent"]["enum"] == [
        "session",
        "photos_classified",
        "submissions",
        "reviews",
    ]


def test_openapi_lists_exactly_the_routes(edge: EdgeApp) -> None:
    documented = {
        (path, method.upper()) for path, item in document()["paths"].items() for method in item
    }
    served = {
        (path_template(rule.rule), method)
        for rule in edge.app.url_map.iter_rules()
        if rule.endpoint.partition(".")[0] not in ("static", "web")  # the web page is no API
        for method in rule.methods or ()
        if method in ("GET", "POST")
    }
    assert served == documented


def test_every_success_answer_matches_its_schema(
    make_app: Callable[..., EdgeApp], dataset_dir: Path
) -> None:
    edge = make_app()
    client, admin = edge.client(), edge.admin()
    assert isinstance(client, DocumentedClient)
    photos = sorted((dataset_dir / "grass").glob("*.jpg"))

    def upload(data: bytes, name: str = "photo.jpg", **form: str) -> dict[str, Any]:
        return {"file": (io.BytesIO(data), name), **form}

    def fresh(index: int) -> bytes:  # bytes no stored photo has
        return encode(Image.open(photos[20 + index]).rotate(90), "PNG")

    for path in ("/health/live", "/health/ready", "/metrics", "/openapi.json", "/model"):
        assert client.get(path).status_code == 200, path
    assert client.post("/predict", data=upload(photos[0].read_bytes())).status_code == 200
    files = [(io.BytesIO(photos[1].read_bytes()), "a.jpg"), (io.BytesIO(b"no"), "b.txt")]
    assert client.post("/predict/batch", data={"files": files}).status_code == 200
    assert client.post("/check_duplicate", data=upload(photos[2].read_bytes())).status_code == 200
    ids = [
        client.post("/submissions", data=upload(fresh(i), "p.png", label="grass")).get_json()["id"]
        for i in range(3)
    ]
    again = client.post("/submissions", data=upload(fresh(0), "p.png", label="grass"))
    assert again.status_code == 200
    assert client.post("/usage", json={"event": "session"}).status_code == 200

    assert client.get("/admin/submissions", headers=admin).status_code == 200
    assert client.get(f"/admin/submissions/{ids[0]}/image", headers=admin).status_code == 200
    review = {"action": "approve", "label": "dandelion"}
    one = client.post(f"/admin/submissions/{ids[0]}/review", json=review, headers=admin)
    assert one.status_code == 200
    many = {"ids": ids[1:], "action": "reject"}
    assert client.post("/admin/submissions/review", json=many, headers=admin).status_code == 200
    assert client.post("/admin/submissions/undo", headers=admin).status_code == 200
    assert client.get("/admin/audit", headers=admin).status_code == 200
    similar = client.get(f"/admin/photos/{ids[0]}/similar?limit=3", headers=admin)
    assert similar.status_code == 200
    assert client.get("/admin/label-audit", headers=admin).status_code == 200
    trained = 1  # the fixture's models trained on the first photos stored
    remove = {"action": "remove"}
    fixed = client.post(f"/admin/label-audit/{trained}", json=remove, headers=admin)
    assert fixed.status_code == 200
    assert client.get("/models", headers=admin).status_code == 200
    assert client.post("/admin/models/2/promote", headers=admin).status_code == 200
    assert client.post("/admin/models/rollback", headers=admin).status_code == 200
    queued = client.post("/admin/retrain", headers=admin)
    assert queued.status_code == 202
    task = queued.get_json()["task_id"]
    assert client.get(f"/admin/retrain/{task}", headers=admin).status_code == 200
    code = edge.services.app.create_pairing_code().code
    assert client.post("/pair", json={"code": code, "device": "tablet"}).status_code == 201

    successes = {
        (path, method.upper(), int(status))
        for path, item in document()["paths"].items()
        for method, operation in item.items()
        for status in operation["responses"]
        if status.startswith("2")
    }
    assert successes <= client.checked, successes - client.checked
