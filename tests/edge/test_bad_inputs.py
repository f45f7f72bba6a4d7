"""Hostile, broken and odd inputs: each gets its 4xx in the one error shape, never a 5xx.

The table runs against the Flask test client and against a real ``classifi serve`` on
127.0.0.1. Afterwards the server is still ready and nothing of the rejected uploads is stored.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select

from core.registry import Photo, Registry
from core.store import LocalStore
from tests.edge.callers import Answer, Call, Caller, HttpCaller, TestClientCaller
from tests.edge.conftest import EdgeApp, LiveServer
from tests.edge.photos import encode, exif_rotated, huge_png, odd_but_valid
from tests.homes import edge_settings, photo_name

pytestmark = pytest.mark.slow

TOKEN = "{token}"  # replaced by the target's admin token
LIMIT = 10 * 1024 * 1024  # the default max_upload_bytes


def photo_bytes(dataset_dir: Path) -> bytes:
    return sorted((dataset_dir / "dandelion").glob("*.jpg"))[0].read_bytes()


def bad_inputs(dataset_dir: Path) -> list[tuple[str, Call, int]]:
    jpeg = photo_bytes(dataset_dir)
    png_half = odd_but_valid(sorted((dataset_dir / "grass").glob("*.jpg"))[0])["alpha_png"][0]
    png_half = png_half[: len(png_half) // 2]
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><rect/></svg>'
    html = b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>"
    tiny = encode(Image.new("RGB", (4, 4)), "PNG")

    def predict(name: str, data: bytes, field: str = "file") -> Call:
        return Call("POST", "/predict", files=[(field, name, data)])

    def submit(name: str, data: bytes, **form: str) -> Call:
        return Call("POST", "/submissions", files=[("file", name, data)], form=form)

    admin = {"Authorization": f"Bearer {TOKEN}"}
    return [
        ("truncated_jpeg", predict("cut.jpg", jpeg[: len(jpeg) // 2]), 400),
        ("truncated_png", predict("cut.png", png_half), 400),
        ("zero_bytes", predict("empty.jpg", b""), 400),
        ("text_file", predict("notes.jpg", b"just some text, not a photo\n" * 20), 415),
        ("html", predict("page.jpg", html), 415),
        ("svg", predict("drawing.svg", svg), 415),
        ("pdf", predict("doc.jpg", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"), 415),
        ("pixel_bomb_20000x20000_png", predict("bomb.png", huge_png()), 413),
        ("too_small_4x4", predict("tiny.png", tiny), 400),
        ("file_over_limit", predict("big.jpg", jpeg + bytes(LIMIT)), 413),
        (
            "raw_body_over_limit",
            Call("POST", "/predict", body=jpeg + bytes(LIMIT + 70_000), content_type="image/jpeg"),
            413,
        ),
        ("wrong_field_name", predict("photo.jpg", jpeg, field="image"), 400),
        ("no_body", Call("POST", "/predict"), 415),
        ("json_body", Call("POST", "/predict", json={"file": "photo.jpg"}), 415),
        (
            "raw_text_with_image_type",
            Call("POST", "/predict", body=b"hello", content_type="image/jpeg"),
            415,
        ),
        ("batch_without_files", Call("POST", "/predict/batch", form={"x": "1"}), 400),
        (
            "batch_over_cap",
            Call("POST", "/predict/batch", files=[("files", f"{i}.jpg", jpeg) for i in range(33)]),
            400,
        ),
        ("submission_without_label", submit("photo.jpg", jpeg), 400),
        ("submission_unknown_label", submit("photo.jpg", jpeg, label="tulip"), 400),
        ("submission_text_file", submit("notes.jpg", b"not a photo", label="grass"), 415),
        ("submission_corrupt", submit("cut.jpg", jpeg[:500], label="grass"), 400),
        (
            "review_bad_action",
            Call("POST", "/admin/submissions/1/review", json={"action": "maybe"}, headers=admin),
            400,
        ),
        (
            "review_not_json",
            Call("POST", "/admin/submissions/1/review", body=b"approve", headers=admin),
            400,
        ),
        (
            "review_unknown_photo",
            Call(
                "POST", "/admin/submissions/999999/review", json={"action": "reject"}, headers=admin
            ),
            404,
        ),
        ("usage_bad_event", Call("POST", "/usage", json={"event": "DROP TABLE", "count": 1}), 400),
        ("get_on_post_route", Call("GET", "/predict"), 405),
        ("unknown_route", Call("GET", "/predict/../../etc/passwd"), 404),
        # Refused admin tokens last: five is the default limit per address and minute, and
        # a sixth, of any token, would answer 429 (tests/hardening/test_rate_limits.py).
        ("admin_without_token", Call("GET", "/admin/submissions"), 401),
        (
            "admin_wrong_token",
            Call("GET", "/admin/submissions", headers={"Authorization": "Bearer nope"}),
            401,
        ),
        (
            "admin_basic_auth",
            Call("GET", "/models", headers={"Authorization": "Basic YWRtaW46YWRtaW4="}),
            401,
        ),
        (
            "review_wrong_token",
            Call(
                "POST",
                "/admin/submissions/1/review",
                json={"action": "approve"},
                headers={"Authorization": f"Bearer {TOKEN}x"},
            ),
            401,
        ),
        (
            "promote_without_token",
            Call("POST", "/admin/models/1/promote"),
            401,
        ),
    ]


def odd_inputs(dataset_dir: Path) -> list[tuple[str, Call]]:
    photo = sorted((dataset_dir / "dandelion").glob("*.jpg"))[0]
    return [
        (name, Call("POST", "/predict", files=[("file", filename, data)]))
        for name, (data, filename) in odd_but_valid(photo).items()
    ]


def with_token(call: Call, token: str) -> Call:
    call.headers = {k: v.replace(TOKEN, token) for k, v in call.headers.items()}
    return call


def stored_state(home: Path) -> tuple[int, int]:
    """Rows in the registry and objects in the bucket."""
    settings = edge_settings(home)
    registry = Registry(settings.registry_url)
    with registry.session() as session:
        rows = session.scalar(select(func.count()).select_from(Photo)) or 0
    registry.dispose()
    return rows, len(list(LocalStore(home / "bucket").list()))


def check_error_shape(answer: Answer) -> None:
    assert answer.content_type.startswith("application/json")
    assert set(answer.json) >= {"error"}
    assert set(answer.json["error"]) == {"code", "message"}
    assert answer.json["error"]["message"] and "Traceback" not in answer.json["error"]["message"]


def run_table(call: Caller, token: str, dataset_dir: Path) -> None:
    table = bad_inputs(dataset_dir)
    assert len(table) >= 20
    got = {}
    for name, request, _ in table:
        answer = call(with_token(request, token))
        got[name] = answer.status
        assert answer.status < 500, (name, answer.json)
        check_error_shape(answer)
    assert got == {name: status for name, _, status in table}

    for name, request in odd_inputs(dataset_dir):
        answer = call(request)
        assert answer.status == 200, (name, answer.json)
        assert answer.json["prediction"] == "dandelion", name


def test_table_through_the_test_client(edge: EdgeApp, dataset_dir: Path) -> None:
    before = stored_state(edge.settings.home)
    run_table(TestClientCaller(edge.client()), edge.token, dataset_dir)
    assert stored_state(edge.settings.home) == before  # nothing of the rejects stored
    assert edge.client().get("/health/ready").status_code == 200


def test_table_through_a_real_server(live_server: LiveServer, dataset_dir: Path) -> None:
    before = stored_state(live_server.home)
    run_table(HttpCaller(live_server.url), live_server.token, dataset_dir)
    assert stored_state(live_server.home) == before
    caller = HttpCaller(live_server.url)
    assert caller(Call("GET", "/health/ready")).status == 200
    assert "Traceback" not in live_server.log.read_text()


def test_exif_rotated_photo_is_turned_upright_and_classified(
    edge: EdgeApp, dataset_dir: Path, expected_labels: dict[int, dict[str, str]]
) -> None:
    call = TestClientCaller(edge.client())
    for label in ("dandelion", "grass"):
        photo = sorted((dataset_dir / label).glob("*.jpg"))[3]
        upright = call(Call("POST", "/predict", files=[("file", "u.jpg", photo.read_bytes())]))
        rotated = call(Call("POST", "/predict", files=[("file", "r.jpg", exif_rotated(photo))]))
        assert rotated.status == 200
        assert rotated.json["prediction"] == expected_labels[1][photo_name(photo)] == label
        assert rotated.json["confidence"] == pytest.approx(upright.json["confidence"], abs=0.05)
