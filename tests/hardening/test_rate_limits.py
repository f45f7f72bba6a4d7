"""Rate limits on every route, per client address and per device key; refused admin tokens
per address (the REST routes and the page's sign-in in one count); the desktop's admin
password in-process; X-Forwarded-For trusted only behind a trusted proxy; and a reset admin
token ending the web page's sessions."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from core.app import App
from core.config import Settings
from core.errors import AuthError
from tests.edge.conftest import EdgeApp
from tests.services import free_port
from tests.web.conftest import csrf_of

pytestmark = pytest.mark.slow


def at(client: FlaskClient, address: str) -> FlaskClient:
    client.environ_base["REMOTE_ADDR"] = address
    return client


def page_client(edge: EdgeApp) -> FlaskClient:
    """A client for the web page too (the edge suite's checks every answer against the
    OpenAPI document, which has no pages)."""
    return FlaskClient(edge.app, edge.app.response_class)


def assert_rate_limited(answer: TestResponse, who: str) -> None:
    """A 429 in the REST error shape, naming who is limited and when to come back."""
    assert answer.status_code == 429
    error = answer.get_json()["error"]
    wait = int(answer.headers["Retry-After"])
    assert 1 <= wait <= 60
    assert error["code"] == "rate_limited"
    assert who in error["message"] and f"Wait {wait} seconds" in error["message"]


def test_each_route_is_limited_per_address(make_app: Callable[..., EdgeApp]) -> None:
    edge = make_app(rate_limit_other="3 per minute")
    client = at(edge.client(), "192.0.2.1")
    assert [client.get("/health/live").status_code for _ in range(3)] == [200] * 3
    assert_rate_limited(client.get("/health/live"), "from this address to /health/live")
    assert client.get("/model").status_code == 200  # another route has its own count
    other = at(edge.client(), "192.0.2.2")
    assert other.get("/health/live").status_code == 200  # another address too


def test_a_flood_of_made_up_keys_is_stopped_per_address(make_app: Callable[..., EdgeApp]) -> None:
    edge = make_app(host="0.0.0.0", rate_limit_other="3 per minute")
    client = at(edge.client(), "192.0.2.3")
    answers = [client.get("/model", headers={"X-API-Key": f"guess-{n}"}) for n in range(4)]
    assert [answer.status_code for answer in answers] == [401, 401, 401, 429]


def test_a_device_key_is_limited_from_every_address(make_app: Callable[..., EdgeApp]) -> None:
    edge = make_app(host="0.0.0.0", rate_limit_other="2 per minute")
    busy = {"X-API-Key": edge.services.app.create_device_key("busy-phone")}
    calm = {"X-API-Key": edge.services.app.create_device_key("calm-phone")}
    first, second, third = (at(edge.client(), f"192.0.2.{n}") for n in (4, 5, 6))
    assert first.get("/model", headers=busy).status_code == 200
    assert second.get("/model", headers=busy).status_code == 200
    assert_rate_limited(third.get("/model", headers=busy), "with this device key")
    assert third.get("/model", headers=calm).status_code == 200


def test_refused_admin_tokens_are_limited_across_rest_and_page(
    make_app: Callable[..., EdgeApp],
) -> None:
    edge = make_app(rate_limit_sign_in="4 per minute")
    client = at(page_client(edge), "192.0.2.7")
    for _ in range(3):  # the right token never uses the count up
        assert client.get("/models", headers=edge.admin()).status_code == 200
    wrong = {"Authorization": "Bearer guess"}
    assert client.get("/models", headers=wrong).status_code == 401
    assert client.get("/admin/audit", headers=wrong).status_code == 401
    assert client.post("/admin/submissions/undo", headers=wrong).status_code == 401
    page = client.get("/admin").text
    signed = client.post("/admin/sign-in", data={"csrf_token": csrf_of(page), "token": "guess"})
    assert signed.status_code == 401
    # Four refusals from this address, on three REST routes and the page: the right token is
    # refused too, until the window passes.
    assert_rate_limited(client.get("/models", headers=edge.admin()), "refused admin tokens")
    again = client.post("/admin/sign-in", data={"csrf_token": csrf_of(page), "token": edge.token})
    assert again.status_code == 429 and "Please wait" in again.text
    assert at(edge.client(), "192.0.2.8").get("/models", headers=edge.admin()).status_code == 200


def test_forwarded_for_counts_only_behind_a_trusted_proxy(
    make_app: Callable[..., EdgeApp],
) -> None:
    def limited_after_two(trusted: bool) -> list[int]:
        edge = make_app(rate_limit_other="2 per minute", trusted_proxy=trusted)
        client = at(edge.client(), "10.0.0.1")  # the proxy's address
        return [
            client.get("/health/live", headers={"X-Forwarded-For": f"198.51.100.{n}"}).status_code
            for n in range(3)
        ]

    assert limited_after_two(trusted=True) == [200, 200, 200]  # three clients behind the proxy
    assert limited_after_two(trusted=False) == [200, 200, 429]  # one peer, whatever it claims


def test_the_desktop_password_is_limited_in_process(
    make_settings: Callable[..., Settings],
) -> None:
    app = App(make_settings(rate_limit_sign_in="3 per minute"), actor="desktop-admin")
    app.choose_admin_password("correct horse")
    app.verify_admin_password("correct horse")
    for _ in range(3):
        with pytest.raises(AuthError, match="credentials are wrong"):
            app.verify_admin_password("guess")
    with pytest.raises(AuthError, match=r"Too many wrong passwords: wait \d+ seconds"):
        app.verify_admin_password("correct horse")
    app.close()  # closing the stores does not reset the count
    with pytest.raises(AuthError, match="Too many wrong passwords"):
        app.verify_admin_password("correct horse")


def test_resetting_the_admin_token_ends_web_sessions(make_app: Callable[..., EdgeApp]) -> None:
    edge = make_app()
    client = page_client(edge)
    form = {"csrf_token": csrf_of(client.get("/admin").text), "token": edge.token}
    assert client.post("/admin/sign-in", data=form).status_code == 303
    assert "Sign out" in client.get("/admin").text
    edge.services.app.reset_admin_token()
    page = client.get("/admin").text
    assert "Sign out" not in page and re.search(r'name="token"', page)  # asked to sign in again


def test_with_redis_down_the_limits_go_on_in_memory(make_app: Callable[..., EdgeApp]) -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    edge = make_app(queue_url=down, rate_limit_other="2 per minute")
    client = at(edge.client(), "192.0.2.30")
    answers = [client.get("/health/live").status_code for _ in range(3)]
    assert answers == [200, 200, 429]  # served, and still limited: no 500
