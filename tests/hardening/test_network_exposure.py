"""Off loopback, prediction, submission and usage need a device key (or a configured plain
key); allow_anonymous opens them again and says so; a key sent is always checked and names
the submitter, so that the per-submitter quota is per key."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from core.registry import Photo
from core.wire import PhotoStatus
from tests.edge.conftest import EdgeApp
from tests.hardening.conftest import upload

pytestmark = pytest.mark.slow

#: Every keyed route, with a request that it answers 200/201 when the key is right.
KEYED = ("/predict", "/predict/batch", "/model", "/submissions", "/check_duplicate", "/usage")


def keyed_request(
    client: FlaskClient, path: str, photo: bytes, headers: dict[str, str]
) -> tuple[int, Any]:
    if path == "/usage":
        answer = client.post(path, json={"event": "session"}, headers=headers)
    elif path == "/model":
        answer = client.get(path, headers=headers)
    else:
        form: dict[str, Any] = {
            "files" if path == "/predict/batch" else "file": (io.BytesIO(photo), "p.png")
        }
        if path == "/submissions":
            form["label"] = "grass"
        answer = client.post(path, data=form, headers=headers)
    return answer.status_code, answer.get_json()


def pending_submitters(edge: EdgeApp) -> set[str | None]:
    with edge.services.app.registry.session() as session:
        return set(
            session.scalars(select(Photo.submitted_by).where(Photo.status == PhotoStatus.PENDING))
        )


def test_off_loopback_every_keyed_route_needs_a_device_key(
    make_app: Callable[..., EdgeApp], new_photo: Callable[[int], bytes]
) -> None:
    edge = make_app(host="0.0.0.0")
    client = edge.client()
    key = edge.services.app.create_device_key("phone-anna")
    for path in KEYED:
        status, body = keyed_request(client, path, new_photo(1), {})
        assert status == 401, path
        assert body["error"]["code"] == "auth_error"
        assert "classifi keys create NAME" in body["error"]["message"]
        wrong = keyed_request(client, path, new_photo(1), {"X-API-Key": key + "x"})
        assert wrong[0] == 401 and "wrong or was revoked" in str(wrong[1]), path
    for number, path in enumerate(KEYED):
        headers = {"X-API-Key": key} if number % 2 else {"Authorization": f"Bearer {key}"}
        status, _ = keyed_request(client, path, new_photo(2 + number), headers)
        assert status in (200, 201), path
    for path in ("/health/live", "/health/ready", "/metrics", "/openapi.json"):
        assert client.get(path).status_code == 200, path  # probes and scrapes stay open

    edge.services.app.revoke_device_key("phone-anna")
    assert keyed_request(client, "/model", b"", {"X-API-Key": key})[0] == 401


def test_configured_keys_keep_working_beside_device_keys(
    make_app: Callable[..., EdgeApp], new_photo: Callable[[int], bytes]
) -> None:
    edge = make_app(host="0.0.0.0", api_keys=("compose-key-1", "compose-key-2"))
    client = edge.client()
    device = edge.services.app.create_device_key("lab-desktop")
    for key in ("compose-key-2", device):
        answer = client.post(
            "/submissions",
            data=upload(new_photo(10 if key == device else 11), label="grass", submitter="x"),
            headers={"X-API-Key": key},
        )
        assert answer.status_code == 201, answer.get_json()
    # The key names the submitter, whatever the form says: "api_keys[2]" is the second one.
    assert pending_submitters(edge) == {"api_keys[2]", "lab-desktop"}


def test_a_keys_quota_is_its_own(
    make_app: Callable[..., EdgeApp], new_photo: Callable[[int], bytes]
) -> None:
    edge = make_app(host="0.0.0.0", max_pending_per_submitter=2)
    client = edge.client()
    first = edge.services.app.create_device_key("phone-1")
    second = edge.services.app.create_device_key("phone-2")

    def submit(key: str, index: int, submitter: str = "") -> int:
        form = upload(new_photo(index), label="grass", submitter=submitter)
        return client.post("/submissions", data=form, headers={"X-API-Key": key}).status_code

    assert [submit(first, 20), submit(first, 21)] == [201, 201]
    # A made-up submitter name does not get the device round its quota.
    refused = client.post(
        "/submissions",
        data=upload(new_photo(22), label="grass", submitter="someone-else"),
        headers={"X-API-Key": first},
    )
    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "quota_exceeded"
    assert "phone-1 has 2 submissions waiting" in refused.get_json()["error"]["message"]
    assert submit(second, 23) == 201


def test_allow_anonymous_opens_the_routes_and_says_so(
    make_app: Callable[..., EdgeApp],
    new_photo: Callable[[int], bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="edge_server.auth"):
        edge = make_app(host="0.0.0.0", allow_anonymous=True)
    assert "allow_anonymous" in caplog.text and "without a key" in caplog.text
    client = edge.client()
    for number, path in enumerate(KEYED):
        assert keyed_request(client, path, new_photo(30 + number), {})[0] in (200, 201), path
    # A key that is sent is still checked: a wrong one is not taken for no key.
    assert keyed_request(client, "/model", b"", {"X-API-Key": "made-up"})[0] == 401


def test_on_loopback_no_key_is_needed_but_a_wrong_one_is_refused(
    make_app: Callable[..., EdgeApp],
) -> None:
    edge = make_app()
    client = edge.client()
    assert client.get("/model").status_code == 200
    assert client.get("/model", headers={"X-API-Key": "made-up"}).status_code == 401
    key = edge.services.app.create_device_key("kiosk")
    assert client.get("/model", headers={"X-API-Key": key}).status_code == 200
