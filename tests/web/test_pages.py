"""The web page's rules through the Flask test client: the API key off loopback, the sign-in
limit (in memory and on Redis), cookie flags behind TLS and proxies, the session key shared
through the registry, errors as pages, and the REST routes left as they were."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from werkzeug.datastructures import FileStorage

from core import metrics
from core.wire import Prediction
from edge_server.uploads import Upload
from edge_server.web.page import PhotoResult
from tests.edge.conftest import EdgeApp
from tests.web.conftest import csrf_of

pytestmark = pytest.mark.slow

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"


def photo_bytes(dataset_dir: Path, label: str = "grass", index: int = 0) -> bytes:
    return sorted((dataset_dir / label).glob("*.jpg"))[index].read_bytes()


def form_with(client: FlaskClient, **fields: object) -> dict[str, object]:
    """``fields`` and the CSRF token of the session the photo page gave ``client``."""
    return {"csrf_token": csrf_of(client.get("/").text), **fields}


def photo_field(data: bytes, name: str = "photo.jpg") -> FileStorage:
    return FileStorage(io.BytesIO(data), name, content_type="image/jpeg")


def set_cookie_headers(response: object, name: str) -> list[str]:
    return [
        value
        for value in response.headers.getlist("Set-Cookie")  # type: ignore[attr-defined]
        if value.startswith(f"{name}=")
    ]


def test_off_loopback_the_page_asks_for_the_key_once_and_keeps_it(
    make_web_app: Callable[..., EdgeApp], dataset_dir: Path
) -> None:
    edge = make_web_app(host="0.0.0.0", api_keys=("phone-key",))
    client = edge.client()
    assert 'name="api_key"' in client.get("/").text
    data = photo_bytes(dataset_dir)

    refused = client.post("/classify", data=form_with(client, photos=photo_field(data)))
    assert refused.status_code == 401
    assert "A device key is required" in refused.text and "<html" in refused.text

    typed = client.post(
        "/classify", data=form_with(client, photos=photo_field(data), api_key="phone-key")
    )
    assert typed.status_code == 200 and 'class="verdict"' in typed.text
    (cookie,) = set_cookie_headers(typed, "classifi_api_key")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    assert "saved in this browser" in client.get("/").text

    kept = client.post("/classify", data=form_with(client, photos=photo_field(data)))
    assert kept.status_code == 200  # the cookie's key, not typed again

    wrong = client.post(
        "/classify", data=form_with(client, photos=photo_field(data), api_key="guess")
    )
    assert wrong.status_code == 401 and "The device key is wrong" in wrong.text
    (forgotten,) = set_cookie_headers(wrong, "classifi_api_key")
    assert "Max-Age=0" in forgotten or "Expires=Thu, 01 Jan 1970" in forgotten
    assert (
        client.post("/classify", data=form_with(client, photos=photo_field(data))).status_code
        == 401
    )

    # The REST routes keep their own rule: the header, never the page's cookie.
    client.set_cookie("classifi_api_key", "phone-key")
    rest = {"file": (io.BytesIO(data), "g.jpg")}
    assert client.post("/predict", data=rest).status_code == 401
    rest = {"file": (io.BytesIO(data), "g.jpg")}
    assert client.post("/predict", data=rest, headers={"X-API-Key": "phone-key"}).status_code == 200


def test_failed_sign_ins_are_limited_with_retry_after_and_a_clear_page(
    make_web_app: Callable[..., EdgeApp],
) -> None:
    edge = make_web_app()
    client = edge.client()
    for _ in range(6):  # signing in with the right token never uses up the limit
        assert (
            client.post("/admin/sign-in", data=form_with(client, token=edge.token)).status_code
            == 303
        )
    for _ in range(5):
        answer = client.post("/admin/sign-in", data=form_with(client, token="guess"))
        assert answer.status_code == 401
    limited = client.post("/admin/sign-in", data=form_with(client, token=edge.token))
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert re.search(r"Too many attempts from this address\. Wait \d+ seconds", limited.text)
    assert "<html" in limited.text
    other = edge.app.test_client()  # another address has its own count
    other.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    assert other.post("/admin/sign-in", data=form_with(other, token=edge.token)).status_code == 303


@pytest.mark.integration
def test_on_redis_the_sign_in_limit_holds_across_workers(
    make_web_app: Callable[..., EdgeApp], redis_url: str
) -> None:
    first, second = make_web_app(queue_url=redis_url), make_web_app(queue_url=redis_url)
    for edge in (first, second, first, second, first):
        client = edge.client()
        assert (
            client.post("/admin/sign-in", data=form_with(client, token="guess")).status_code == 401
        )
    client = second.client()
    assert (
        client.post("/admin/sign-in", data=form_with(client, token=second.token)).status_code == 429
    )


def test_session_cookie_flags_follow_tls_and_trust_a_proxy_only_when_told(
    make_web_app: Callable[..., EdgeApp],
) -> None:
    direct = make_web_app()

    def session_cookie(edge: EdgeApp, **options: object) -> str:
        client = edge.app.test_client()
        (cookie,) = set_cookie_headers(client.get("/", **options), "classifi_session")
        return cookie

    plain = session_cookie(direct)
    assert "HttpOnly" in plain and "SameSite=Strict" in plain and "Secure" not in plain
    assert "Secure" in session_cookie(direct, base_url="https://localhost")
    forwarded = {"X-Forwarded-Proto": "https"}
    assert "Secure" not in session_cookie(direct, headers=forwarded)  # anyone can send that
    proxied = make_web_app(trusted_proxy=True)
    assert "Secure" in session_cookie(proxied, headers=forwarded)
    assert "Secure" not in session_cookie(proxied, headers={"X-Forwarded-Proto": "http"})


def test_the_session_key_lives_in_the_registry_shared_by_workers_and_restarts(
    make_web_app: Callable[..., EdgeApp],
) -> None:
    edge = make_web_app()
    client = edge.client()
    assert (
        client.post("/admin/sign-in", data=form_with(client, token=edge.token)).status_code == 303
    )
    # Another worker (or the server after a restart) on the same registry.
    from edge_server.app import create_app
    from edge_server.services import Services

    services = Services.build(edge.settings)
    try:
        sibling = create_app(services=services)
        assert sibling.secret_key == edge.app.secret_key
        assert len(str(sibling.secret_key)) == 64
        signed_in = sibling.test_client()
        cookie = client.get_cookie("classifi_session")
        assert cookie is not None
        signed_in.set_cookie("classifi_session", cookie.value)
        assert "Undo the last decision" in signed_in.get("/admin").text
    finally:
        services.close()
    assert make_web_app().app.secret_key != edge.app.secret_key  # another home, another key


def test_admin_actions_need_a_signed_in_session(make_web_app: Callable[..., EdgeApp]) -> None:
    edge = make_web_app()
    client = edge.client()
    before = edge.services.app.audit_log(50)
    assert client.get("/admin/photos/1").status_code == 401
    for path in ("/admin/decide", "/admin/undo"):
        answer = client.post(path, data=form_with(client, photo_id="1", decision="reject"))
        assert answer.status_code == 303 and answer.headers["Location"] == "/admin"
    assert edge.services.app.audit_log(50) == before  # nothing was decided


def test_too_much_in_one_go_is_a_page_not_a_reset(
    make_web_app: Callable[..., EdgeApp], dataset_dir: Path
) -> None:
    edge = make_web_app(max_upload_bytes=20_000, max_batch_files=1)
    client = edge.client()
    answer = client.post(
        "/classify", data=form_with(client, photos=photo_field(photo_bytes(dataset_dir) * 10))
    )
    assert answer.status_code == 413
    assert "That is too much in one go: send at most 1 photos" in answer.text
    empty = client.post("/classify", data=form_with(client, photos=photo_field(b"", "")))
    assert empty.status_code == 400 and "Take or choose a photo first." in empty.text


def test_the_rest_routes_set_no_cookie_and_answer_json(
    make_web_app: Callable[..., EdgeApp], dataset_dir: Path
) -> None:
    client = make_web_app().client()
    answer = client.post("/predict", data={"file": (io.BytesIO(photo_bytes(dataset_dir)), "g.jpg")})
    assert answer.status_code == 200 and answer.is_json
    assert "Set-Cookie" not in answer.headers
    missing = client.get("/no/such/page")
    assert missing.is_json and missing.get_json()["error"]["code"] == "not_found"


def test_web_events_are_a_fixed_vocabulary_on_the_dashboard(
    make_web_app: Callable[..., EdgeApp],
) -> None:
    def count(event: str) -> float:
        value = metrics.WEB_EVENTS.labels(event)._value.get()  # type: ignore[attr-defined]
        return float(value)

    edge = make_web_app()
    client = edge.client()
    before = {event: count(event) for event in metrics.WebEvent}
    client.get("/")
    client.post("/admin/sign-in", data=form_with(client, token=edge.token))
    client.post("/admin/undo", data=form_with(client))
    assert count("page_view") == before["page_view"] + 3  # form_with opens the page
    assert count("admin_sign_in") == before["admin_sign_in"] + 1
    assert count("undo") == before["undo"] + 1
    with pytest.raises(ValueError):
        metrics.count_web_event("anything")  # type: ignore[arg-type]

    dashboard = json.loads(
        (PACKAGING / "grafana" / "dashboards" / "api_dashboard.json").read_text()
    )
    queries = " ".join(
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    )
    assert "classifi_web_events_total" in queries


def test_model_quality_answers_show_when_a_prediction_has_them(
    make_web_app: Callable[..., EdgeApp],
) -> None:
    """Out of distribution, the calibrated verdict and a heatmap are rendered."""
    edge = make_web_app()
    answer = Prediction(
        label="grass",
        confidence=0.95,
        probabilities={"dandelion": 0.05, "grass": 0.95},
        model_version=1,
        backbone="efficientnet_lite0",
        out_of_distribution=True,
        unsure=True,
        heatmap="iVBORw0KGgo=",
    )
    result = PhotoResult.of(0, Upload("gnome.jpg", b""), answer)
    assert result.out_of_distribution and result.unsure
    assert result.heatmap == "data:image/png;base64,iVBORw0KGgo="
    today = Prediction(
        label="dandelion",
        confidence=0.6,
        probabilities={"dandelion": 0.6, "grass": 0.4},
        model_version=1,
        backbone="efficientnet_lite0",
        unsure=True,
        out_of_distribution=False,
    )
    plain = PhotoResult.of(1, Upload("a.jpg", b""), today)
    assert plain.unsure and not plain.out_of_distribution and plain.heatmap is None
    with edge.app.test_request_context("/"):
        from flask import render_template

        html = render_template(
            "_results.html", results=[result, plain], labels=edge.settings.labels
        )
    assert "This does not look like a photo of dandelion or grass." in html
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in html
    assert "Unsure: the model is not confident" in html
