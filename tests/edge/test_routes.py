"""Every route through the Flask test client: happy paths, errors, auth, CORS, OpenAPI."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from core.errors import NoChampion
from edge_server.app import create_app
from edge_server.services import Services
from tests.edge.conftest import EdgeApp, documented
from tests.homes import edge_settings, photo_name

pytestmark = pytest.mark.slow


def photo(dataset_dir: Path, label: str, index: int = 0) -> Path:
    return sorted((dataset_dir / label).glob("*.jpg"))[index]


def upload(path: Path, field: str = "file") -> dict[str, object]:
    return {field: (io.BytesIO(path.read_bytes()), path.name)}


def test_the_error_shape_is_one_and_the_same(client: FlaskClient) -> None:
    """Werkzeug's errors and the project's answer alike, each with the message that says what
    went wrong (the text itself, not a second answer compared with the first)."""
    expected = {
        ("GET", "/no/such/route"): (
            404,
            "not_found",
            "The requested URL was not found on the server. If you entered the URL manually "
            "please check your spelling and try again.",
        ),
        ("GET", "/predict"): (
            405,
            "method_not_allowed",
            "The method is not allowed for the requested URL.",
        ),
        ("POST", "/predict"): (
            415,
            "unsupported_type",
            "Send the photo as multipart field 'file' or as a raw body with an image content "
            "type, not 'text/plain'.",
        ),
        ("GET", "/models"): (
            401,
            "auth_error",
            "Credentials are missing: send them in the Authorization header.",
        ),
    }
    for (method, path), (status, code, message) in expected.items():
        response = client.open(path, method=method, data=b"text", content_type="text/plain")
        assert response.status_code == status, path
        assert response.get_json() == {"error": {"code": code, "message": message}}, path


def test_predict_multipart_and_raw_body(
    client: FlaskClient, dataset_dir: Path, expected_labels: dict[int, dict[str, str]]
) -> None:
    for label in ("dandelion", "grass"):
        path = photo(dataset_dir, label, 5)
        response = client.post("/predict", data=upload(path))
        assert response.status_code == 200
        body = response.get_json()
        assert list(body) == [
            "prediction",
            "confidence",
            "probabilities",
            "model_version",
            "backbone",
            "unsure",
            "out_of_distribution",
            "heatmap",
        ]
        assert body["heatmap"] is None  # only drawn when asked for (?explain=1)
        assert body["prediction"] == expected_labels[1][photo_name(path)]
        assert body["model_version"] == 1 and body["backbone"] == "efficientnet_lite0"
        assert set(body["probabilities"]) == {"dandelion", "grass"}
        assert sum(body["probabilities"].values()) == pytest.approx(1.0)
        assert body["confidence"] == max(body["probabilities"].values())

        raw = client.post("/predict", data=path.read_bytes(), content_type="image/jpeg")
        assert raw.status_code == 200 and raw.get_json()["prediction"] == body["prediction"]


def test_predict_batch_keeps_order_and_reports_bad_files_inline(
    client: FlaskClient, dataset_dir: Path, expected_labels: dict[int, dict[str, str]]
) -> None:
    paths = [photo(dataset_dir, "grass", 1), photo(dataset_dir, "dandelion", 1)]
    files = [
        (io.BytesIO(paths[0].read_bytes()), paths[0].name),
        (io.BytesIO(b"not a photo"), "notes.txt"),
        (io.BytesIO(paths[1].read_bytes()), paths[1].name),
    ]
    response = client.post("/predict/batch", data={"files": files})
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert [r["filename"] for r in results] == [paths[0].name, "notes.txt", paths[1].name]
    assert results[0]["prediction"] == expected_labels[1][photo_name(paths[0])]
    assert results[2]["prediction"] == expected_labels[1][photo_name(paths[1])]
    assert results[1]["error"]["code"] == "unsupported_type" and "prediction" not in results[1]


def test_model_health_and_openapi(client: FlaskClient) -> None:
    model = client.get("/model").get_json()
    assert model["version"] == 1 and model["backbone"] == "efficientnet_lite0"
    assert model["labels"] == ["dandelion", "grass"] and "accuracy" in str(model["metrics"])
    assert client.get("/health/live").get_json() == {"status": "alive"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.get_json()["checks"] == {"registry": "ok", "store": "ok", "model": "ok"}
    assert client.get("/openapi.json").get_json()["openapi"].startswith("3.")


def test_not_ready_without_a_champion(make_settings: Callable[..., object]) -> None:
    settings = edge_settings(make_settings().home)  # an empty home: no model at all
    services = Services.build(settings)
    services.load_model()
    client = documented(create_app(services=services)).test_client()
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.get_json()["checks"]["model"].startswith("No model yet")
    assert "model:" in ready.get_json()["error"]["message"]
    with pytest.raises(NoChampion):
        services.app.predictor.ensure_loaded()
    services.close()


def test_no_champion_is_503_for_a_good_photo(
    make_settings: Callable[..., object], dataset_dir: Path
) -> None:
    services = Services.build(edge_settings(make_settings().home))
    client = documented(create_app(services=services)).test_client()
    response = client.post("/predict", data=upload(photo(dataset_dir, "grass")))
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "no_champion"
    services.close()


def test_submissions_duplicates_and_check_duplicate(
    make_app: Callable[..., EdgeApp], dataset_dir: Path
) -> None:
    edge = make_app()
    client = edge.client()
    known = photo(dataset_dir, "grass", 2)
    assert client.post("/check_duplicate", data=upload(known)).get_json()["status"] == "known"

    from PIL import Image

    from tests.edge.photos import encode

    new_bytes = encode(Image.open(photo(dataset_dir, "dandelion", 7)).rotate(180), "PNG")
    fresh = {"file": (io.BytesIO(new_bytes), "new.png"), "label": "grass", "submitter": "ann"}
    assert (
        client.post("/check_duplicate", data={"file": (io.BytesIO(new_bytes), "n.png")}).get_json()[
            "status"
        ]
        == "new"
    )
    created = client.post("/submissions", data=fresh)
    assert created.status_code == 201
    body = created.get_json()
    assert body["status"] == "pending" and body["stored"] is True
    assert body["prediction"] in ("dandelion", "grass") and body["model_version"] == 1

    again = client.post(
        "/submissions", data={"file": (io.BytesIO(new_bytes), "again.png"), "label": "grass"}
    )
    assert again.status_code == 200
    assert again.get_json()["duplicate_of"] == body["id"] and again.get_json()["stored"] is False
    check = client.post("/check_duplicate", data={"file": (io.BytesIO(new_bytes), "n.png")})
    assert check.get_json()["status"] == "known"
    assert check.get_json()["duplicate"]["photo_id"] == body["id"]


def test_admin_review_flow(make_app: Callable[..., EdgeApp], dataset_dir: Path) -> None:
    from PIL import Image

    from tests.edge.photos import encode

    edge = make_app()
    client, admin = edge.client(), edge.admin()
    ids = []
    for index in range(4):
        data = encode(Image.open(photo(dataset_dir, "grass", 10 + index)).rotate(90), "PNG")
        answer = client.post(
            "/submissions", data={"file": (io.BytesIO(data), f"{index}.png"), "label": "grass"}
        )
        assert answer.status_code == 201
        ids.append(answer.get_json()["id"])

    pending = client.get("/admin/submissions?status=pending", headers=admin).get_json()
    assert sorted(item["id"] for item in pending["submissions"]) == sorted(ids)
    assert client.get("/admin/submissions?status=validated", headers=admin).status_code == 400

    image = client.get(f"/admin/submissions/{ids[0]}/image", headers=admin)
    assert image.status_code == 200 and image.content_type == "image/png"
    assert image.data.startswith(b"\x89PNG")
    assert client.get("/admin/submissions/999999/image", headers=admin).status_code == 404

    approve = client.post(
        f"/admin/submissions/{ids[0]}/review",
        json={"action": "approve", "label": "dandelion"},
        headers=admin,
    )
    assert approve.status_code == 200
    assert approve.get_json()["new_label"] == "dandelion"
    assert approve.get_json()["status"] == "validated"
    twice = client.post(
        f"/admin/submissions/{ids[0]}/review", json={"action": "reject"}, headers=admin
    )
    assert twice.status_code == 409 and twice.get_json()["error"]["code"] == "conflict"
    unknown_label = client.post(
        f"/admin/submissions/{ids[1]}/review",
        json={"action": "approve", "label": "tulip"},
        headers=admin,
    )
    assert unknown_label.status_code == 400

    bulk = client.post(
        "/admin/submissions/review", json={"ids": ids[1:3], "action": "reject"}, headers=admin
    )
    assert bulk.status_code == 200
    assert [d["status"] for d in bulk.get_json()["decisions"]] == ["rejected", "rejected"]
    assert (
        client.post(
            "/admin/submissions/review", json={"ids": [], "action": "reject"}, headers=admin
        ).status_code
        == 400
    )
    left = client.get("/admin/submissions", headers=admin).get_json()["submissions"]
    assert [item["id"] for item in left] == [ids[3]]

    undone = client.post("/admin/submissions/undo", headers=admin)  # the bulk's last rejection
    assert undone.status_code == 200
    assert (undone.get_json()["id"], undone.get_json()["status"]) == (ids[2], "pending")
    left = client.get("/admin/submissions", headers=admin).get_json()["submissions"]
    assert sorted(item["id"] for item in left) == sorted([ids[2], ids[3]])
    audit = client.get("/admin/audit?limit=4", headers=admin).get_json()["entries"]
    assert [(entry["action"], entry["photo_id"]) for entry in audit] == [
        ("review.undo", ids[2]),
        ("review.reject", ids[2]),
        ("review.reject", ids[1]),
        ("review.approve", ids[0]),
    ]
    assert {entry["actor"] for entry in audit} == {"edge-admin"}
    assert client.get("/admin/audit?limit=x", headers=admin).status_code == 400

    metrics = client.get("/metrics").get_data(as_text=True)
    assert re.search(r'classifi_reviews_total\{outcome="rejected"\} [1-9]', metrics)
    assert re.search(r'classifi_submissions_total\{outcome="stored"\} [1-9]', metrics)


def test_models_promote_rollback_and_retrain(
    make_app: Callable[..., EdgeApp], dataset_dir: Path
) -> None:
    edge = make_app()
    client, admin = edge.client(), edge.admin()
    predictor = edge.services.app.predictor
    models = client.get("/models", headers=admin).get_json()["models"]
    assert [(m["version"], m["state"]) for m in models] == [(2, "candidate"), (1, "champion")]

    def served_version() -> int:
        answer = client.post("/predict", data=upload(photo(dataset_dir, "grass")))
        return int(answer.get_json()["model_version"])

    promoted = client.post(
        "/admin/models/2/promote", headers=admin, json={"reason": "better on the lawn photos"}
    )
    assert promoted.status_code == 200 and promoted.get_json()["state"] == "champion"
    assert edge.services.app.champion_history()[0].reason == "better on the lawn photos"
    # The answer did not wait for the load: version 1 serves until version 2 is ready.
    predictor.wait_for_swap()
    assert served_version() == 2  # no restart
    assert 'classifi_model_info{backbone="efficientnet_lite0",version="2"} 1.0' in client.get(
        "/metrics"
    ).get_data(as_text=True)

    assert client.post("/admin/models/99/promote", headers=admin).status_code == 404
    rolled = client.post("/admin/models/rollback", headers=admin)
    assert rolled.status_code == 200 and rolled.get_json()["version"] == 1
    predictor.wait_for_swap()
    assert served_version() == 1

    from worker.tasks import worker_tasks

    queue = worker_tasks(edge.settings).huey
    before = queue.pending_count()
    queued = client.post("/admin/retrain", headers=admin)
    task_id = queued.get_json()["task_id"]
    assert queued.status_code == 202 and task_id
    assert queue.pending_count() == before + 1  # queued for the worker, not run here
    status = client.get(f"/admin/retrain/{task_id}", headers=admin)
    assert status.get_json() == {
        "task_id": task_id,
        "status": "pending",
        "result": None,
        "error": None,
    }
    assert [m["version"] for m in client.get("/models", headers=admin).get_json()["models"]] == [
        2,
        1,
    ]


def test_no_request_waits_for_a_model_load(
    make_app: Callable[..., EdgeApp], dataset_dir: Path
) -> None:
    """A champion promoted while the server had none loads in the background; meanwhile the
    routes answer at once, 503 model_loading with Retry-After, and then it serves."""
    edge = make_app()
    services = Services.build(edge.settings)  # another process on the same home: no model yet
    client = documented(create_app(services=services)).test_client()
    predictor = services.app.predictor
    with predictor._load_lock:  # the background load waits behind it: a request must not
        assert client.post("/admin/models/2/promote", headers=edge.admin()).status_code == 200
        answers = [
            client.post("/predict", data=upload(photo(dataset_dir, "grass"))),
            client.get("/model"),
        ]
        ready = client.get("/health/ready")
    for answer in answers:
        assert answer.status_code == 503
        assert answer.get_json()["error"]["code"] == "model_loading"
        assert answer.headers["Retry-After"] == "5"
    assert ready.status_code == 503 and "loading" in ready.get_json()["checks"]["model"]
    predictor.wait_for_swap()
    after = client.post("/predict", data=upload(photo(dataset_dir, "grass")))
    assert after.status_code == 200 and after.get_json()["model_version"] == 2
    services.close()


def test_every_admin_route_needs_the_token(edge: EdgeApp) -> None:
    client = edge.client()
    admin_rules = [
        rule
        for rule in edge.app.url_map.iter_rules()
        if (rule.rule.startswith("/admin") or rule.rule == "/models")
        and not rule.endpoint.startswith("web.")  # the admin web page signs in with a session
    ]
    assert len(admin_rules) == 14
    for number, rule in enumerate(admin_rules):
        path = re.sub(r"<[^>]+>", "1", rule.rule)
        method = "POST" if "POST" in (rule.methods or ()) else "GET"
        # Each rule from an address of its own: refused tokens are rate-limited per address.
        address = {"REMOTE_ADDR": f"192.0.2.{number + 1}"}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": edge.token}):
            response = client.open(
                path, method=method, headers=headers, json={}, environ_base=address
            )
            assert response.status_code == 401, (path, headers)
            assert response.headers["WWW-Authenticate"] == "Bearer"


def test_api_keys_off_loopback(make_app: Callable[..., EdgeApp], dataset_dir: Path) -> None:
    path = photo(dataset_dir, "dandelion")
    exposed = make_app(host="0.0.0.0", api_keys=("key-one", "key-two")).client()
    assert exposed.post("/predict", data=upload(path)).status_code == 401
    assert (
        exposed.post("/predict", data=upload(path), headers={"X-API-Key": "nope"}).status_code
        == 401
    )
    assert (
        exposed.post("/predict", data=upload(path), headers={"X-API-Key": "key-two"}).status_code
        == 200
    )
    bearer = {"Authorization": "Bearer key-one"}
    assert exposed.post("/predict", data=upload(path), headers=bearer).status_code == 200
    assert exposed.post("/usage", json={"event": "predict"}).status_code == 401
    assert exposed.get("/health/live").status_code == 200  # probes stay open

    loopback = make_app(api_keys=("key-one",)).client()
    assert loopback.post("/predict", data=upload(path)).status_code == 200


def test_cors_is_off_by_default_and_configurable(
    client: FlaskClient, make_app: Callable[..., EdgeApp]
) -> None:
    origin = {"Origin": "https://photos.example"}
    assert "Access-Control-Allow-Origin" not in client.get("/health/live", headers=origin).headers
    allowed = make_app(cors_origins=("https://photos.example",)).client()
    response = allowed.options("/predict", headers=origin)
    assert response.headers["Access-Control-Allow-Origin"] == "https://photos.example"
    other = allowed.get("/health/live", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_usage_reports_are_counted_for_the_desktop(client: FlaskClient) -> None:
    def count(event: str) -> float:
        text = client.get("/metrics").get_data(as_text=True)
        pattern = rf'classifi_client_events_total\{{client="desktop",event="{event}"\}} (\S+)'
        found = re.search(pattern, text)
        return float(found.group(1)) if found else 0.0

    before = count("photos_classified")
    answer = client.post("/usage", json={"event": "photos_classified", "count": 3})
    assert answer.get_json() == {"event": "photos_classified", "counted": 3}
    assert client.post("/usage", json={"event": "photos_classified"}).status_code == 200
    assert count("photos_classified") == before + 4
    for bad, code in (
        ({"event": "predict_click"}, "invalid_event"),
        ({"event": "session", "count": 0}, "invalid_count"),
        ({"event": "session", "count": 1.5}, "invalid_count"),
        ({"event": "session", "count": True}, "invalid_count"),
        ({"event": "session", "count": 10_001}, "invalid_count"),
        ([], "invalid_json"),
    ):
        answer = client.post("/usage", json=bad)
        assert (answer.status_code, answer.get_json()["error"]["code"]) == (400, code), bad
    assert (
        client.post("/usage", data=b"{not json", content_type="application/json").status_code == 400
    )


def test_made_up_usage_events_add_no_metric_series(client: FlaskClient) -> None:
    def series() -> list[str]:
        text = client.get("/metrics").get_data(as_text=True)
        return [line.rsplit(" ", 1)[0] for line in text.splitlines() if not line.startswith("#")]

    # Every series these requests touch exists once they have been made one time each.
    for event in ("session", "made_up"):
        client.post("/usage", json={"event": event})
    before = series()
    made_up = [f"event_{n}" for n in range(200)] + [
        "Session",
        " session",
        "session ",
        "x" * 65,
        "",
        "DROP TABLE usage",
        "classifi_client_events",
        "photos_classified\n",
    ]
    for event in made_up:
        answer = client.post("/usage", json={"event": event, "count": 1})
        assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "invalid_event"
    after = series()
    assert len(after) == len(before) and set(after) == set(before)
    assert not any("event_" in line or "made_up" in line for line in after)


def test_request_metrics_use_the_route_not_the_path(edge: EdgeApp) -> None:
    client = edge.client()
    client.get("/admin/submissions/12345/image")
    client.get("/metrics")  # counted once answered: the next scrape shows it
    text = client.get("/metrics").get_data(as_text=True)
    assert 'route="/admin/submissions/<int:photo_id>/image",status="401"' in text
    assert "/admin/submissions/12345" not in text  # (digits alone may be in a timestamp)
    assert 'api_requests_total{endpoint="/metrics",method="GET"}' in text


def test_waitress_serves_the_app_where_gunicorn_cannot(
    make_app: Callable[..., EdgeApp], dataset_dir: Path
) -> None:
    import threading

    import requests

    from edge_server.wsgi import waitress_server
    from tests.services import free_port

    edge = make_app(port=free_port())
    server = waitress_server(edge.app, edge.settings)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{edge.settings.port}"
        path = photo(dataset_dir, "dandelion")
        answer = requests.post(f"{url}/predict", files={"file": (path.name, path.read_bytes())})
        assert answer.status_code == 200 and answer.json()["model_version"] == 1
    finally:
        server.close()
        thread.join(timeout=10)
