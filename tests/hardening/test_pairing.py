"""Pairing: ``classifi keys pair`` shows a short code, stored only as its hash; ``POST /pair``
trades it once, within 10 minutes, for a device key; guesses are limited per address."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from classifi.cli import cli
from core.auth import PAIRING_ALPHABET, PAIRING_PREFIX, is_pairing_code
from core.registry.models import Credential
from tests.edge.conftest import EdgeApp

pytestmark = pytest.mark.slow


def pairing_rows(edge: EdgeApp) -> list[Credential]:
    with edge.services.app.registry.session() as session:
        return list(
            session.scalars(select(Credential).where(Credential.name.startswith(PAIRING_PREFIX)))
        )


def test_a_code_from_the_command_line_pairs_a_device_once(
    make_app: Callable[..., EdgeApp],
) -> None:
    edge = make_app(host="0.0.0.0")
    shown = CliRunner().invoke(
        cli, ["--home", str(edge.settings.home), "keys", "pair", "kitchen-tablet", "--json"]
    )
    assert shown.exit_code == 0, shown.output
    pairing = json.loads(shown.stdout)
    code = pairing["code"]
    assert pairing["device"] == "kitchen-tablet" and is_pairing_code(code)
    assert len(code.replace("-", "")) == 8 and set(code.replace("-", "")) <= set(PAIRING_ALPHABET)
    (row,) = pairing_rows(edge)
    assert code.replace("-", "") not in row.secret_hash  # only its hash is kept

    client = edge.client()
    typed = code.lower().replace("-", " ")  # as a person might type it
    paired = client.post("/pair", json={"code": typed, "device": "anna's tablet"})
    assert paired.status_code == 201
    answer = paired.get_json()
    assert answer["device"] == "kitchen-tablet"  # the admin's name, not the device's
    assert client.get("/model", headers={"X-API-Key": answer["key"]}).status_code == 200
    assert not pairing_rows(edge)

    again = client.post("/pair", json={"code": code, "device": "tablet"})
    assert (
        again.status_code == 401
        and "wrong, used or expired" in again.get_json()["error"]["message"]
    )
    listed = CliRunner().invoke(cli, ["--home", str(edge.settings.home), "keys", "list", "--json"])
    assert [key["name"] for key in json.loads(listed.stdout)] == ["kitchen-tablet"]


def test_without_a_name_the_device_names_its_key(make_app: Callable[..., EdgeApp]) -> None:
    edge = make_app(host="0.0.0.0")
    client = edge.client()
    code = edge.services.app.create_pairing_code().code
    bad_name = client.post("/pair", json={"code": code, "device": "no spaces please"})
    assert bad_name.status_code == 400 and bad_name.get_json()["error"]["code"] == "invalid_name"
    paired = client.post("/pair", json={"code": code, "device": "anna-laptop"})  # still valid
    assert paired.status_code == 201 and paired.get_json()["device"] == "anna-laptop"

    taken = edge.services.app.create_pairing_code().code
    clash = client.post("/pair", json={"code": taken, "device": "anna-laptop"})
    assert clash.status_code == 409 and "has a key" in clash.get_json()["error"]["message"]


def test_a_code_expires_after_ten_minutes(make_app: Callable[..., EdgeApp]) -> None:
    edge = make_app(host="0.0.0.0")
    code = edge.services.app.create_pairing_code("old-phone").code
    with edge.services.app.registry.session() as session:
        row = session.get(Credential, PAIRING_PREFIX + "old-phone")
        assert row is not None
        row.created_at = datetime.now(UTC) - timedelta(minutes=10, seconds=1)
    answer = edge.client().post("/pair", json={"code": code, "device": "old-phone"})
    assert answer.status_code == 401
    assert not pairing_rows(edge)  # an expired code is dropped


def test_pairing_is_limited_strictly_per_address(make_app: Callable[..., EdgeApp]) -> None:
    edge = make_app(host="0.0.0.0")  # the default: 5 per minute
    code = edge.services.app.create_pairing_code("phone").code
    client = edge.client()
    client.environ_base["REMOTE_ADDR"] = "192.0.2.20"
    guesses = [
        client.post("/pair", json={"code": f"2222-222{n}", "device": "x"}).status_code
        for n in range(2, 7)
    ]
    assert guesses == [401] * 5
    limited = client.post("/pair", json={"code": code, "device": "phone"})  # even the right one
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    other = edge.client()
    other.environ_base["REMOTE_ADDR"] = "192.0.2.21"
    assert other.post("/pair", json={"code": code, "device": "phone"}).status_code == 201


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[]", b'{"code": "ABCD-EFGH"}', b'{"code": 12345678, "device": "x"}'],
)
def test_a_malformed_pairing_request_says_what_to_send(
    make_app: Callable[..., EdgeApp], body: bytes
) -> None:
    answer = make_app().client().post("/pair", data=body, content_type="application/json")
    assert answer.status_code == 400
    assert answer.get_json()["error"]["code"] == "invalid_json"
    assert '{"code": "K7QM-X3PD", "device": "anna-laptop"}' in answer.get_json()["error"]["message"]
