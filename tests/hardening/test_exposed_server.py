"""A fresh ``classifi serve --host 0.0.0.0`` (bound to every interface only in this file;
the requests go to 127.0.0.1): it refuses /predict without a key, with 401, and accepts the
key it printed once and keeps only as a hash. With allow_anonymous it serves without a key
and says so, in its output and in its log."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from classifi.cli import cli
from core.app import App
from core.auth import DEVICE_PREFIX, FIRST_DEVICE
from core.registry.models import Credential
from tests.edge.conftest import copy_home, start_server
from tests.homes import edge_settings

pytestmark = pytest.mark.slow


def predict(url: str, photo: Path, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(
        f"{url}/predict", files={"file": (photo.name, photo.read_bytes())}, headers=headers or {}
    )


def test_a_fresh_exposed_server_needs_the_key_it_printed(
    tmp_path: Path, edge_home: Path, dataset_photos: dict[str, list[Path]]
) -> None:
    home = copy_home(edge_home, tmp_path / "home")
    server = start_server(home, "--host", "0.0.0.0", "--workers", "2")
    try:
        photo = dataset_photos["dandelion"][0]
        refused = predict(server.url, photo)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "auth_error"
        assert "classifi keys create NAME" in refused.json()["error"]["message"]

        key = server.device_key
        assert key is not None and key.startswith("ck_")
        answer = predict(server.url, photo, {"X-API-Key": key})
        assert answer.status_code == 200 and answer.json()["prediction"] == "dandelion"
        assert predict(server.url, photo, {"Authorization": f"Bearer {key}"}).status_code == 200

        output = (home.parent / f"serve-{server.url.rsplit(':', 1)[1]}.out").read_text()
        assert output.count(key) == 1  # printed once, by one of the two workers
        assert "need a device key" in server.log.read_text()
    finally:
        server.stop()

    with App(edge_settings(home), actor="tests") as app:
        assert [device.name for device in app.device_keys()] == [FIRST_DEVICE]
        with app.registry.session() as session:
            row = session.get(Credential, DEVICE_PREFIX + FIRST_DEVICE)
            assert row is not None and key not in row.secret_hash  # only its hash is kept
        assert app.ensure_first_device_key() is None  # never made, nor shown, twice
    listed = CliRunner().invoke(cli, ["--home", str(home), "keys", "list"])
    assert FIRST_DEVICE in listed.output and key not in listed.output


def test_allow_anonymous_serves_without_a_key_and_says_so(
    tmp_path: Path, edge_home: Path, dataset_photos: dict[str, list[Path]]
) -> None:
    home = copy_home(edge_home, tmp_path / "home")
    server = start_server(home, "--host", "0.0.0.0", env={"CLASSIFI_ALLOW_ANONYMOUS": "true"})
    try:
        assert server.device_key is None  # no key is needed, so none is made
        assert predict(server.url, dataset_photos["grass"][0]).status_code == 200
        said = server.log.read_text()
        assert "allow_anonymous is on: anyone who can reach this port" in said  # serve's output
        assert "with allow_anonymous: prediction, submission and usage are open" in said  # log
    finally:
        server.stop()
