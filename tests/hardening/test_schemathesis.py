"""schemathesis against the live ``/openapi.json`` of a real ``classifi serve`` on 127.0.0.1:
every route, with generated bodies, headers and paths, the admin token and a device key.
No answer may be a 5xx, and every answer must match what the document says of it (status,
content type, headers and schema), as schemathesis's checks judge."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from core.app import App
from edge_server.openapi import document
from tests.edge.conftest import LiveServer, copy_home, start_server
from tests.homes import edge_settings

pytestmark = pytest.mark.slow

#: Examples per route and generation mode: enough to find what broke, in a few minutes.
EXAMPLES = 25
#: The fuzzer sends far more requests than a client would; the limits have their own tests.
UNLIMITED = {
    f"CLASSIFI_RATE_LIMIT_{name}": "1000000 per minute"
    for name in ("PREDICT", "SUBMIT", "PAIR", "OTHER", "SIGN_IN")
}


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory, edge_home: Path) -> Iterator[LiveServer]:
    home = copy_home(edge_home, tmp_path_factory.mktemp("fuzz") / "home")
    with App(edge_settings(home), actor="tests") as app:
        key = app.create_device_key("fuzzer")
    server = start_server(home, "--workers", "2", env=UNLIMITED)
    server.device_key = key
    yield server
    server.stop()


@pytest.fixture(scope="module")
def live_schema(fuzzed: LiveServer) -> Any:
    """The document as the running server serves it (not the one in this process)."""
    return schemathesis.openapi.from_url(f"{fuzzed.url}/openapi.json")


#: Every documented route and method with data schemathesis generates: valid data, and,
#: where a route takes parameters or a body, data its schema refuses.
CASES = [
    (path, method, mode)
    for path, item in document()["paths"].items()
    for method, operation in sorted(item.items())
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode == GenerationMode.POSITIVE or {"parameters", "requestBody"} & set(operation)
]


@pytest.mark.parametrize(("path", "method", "mode"), CASES)
def test_every_route_answers_as_documented(
    live_schema: Any, fuzzed: LiveServer, path: str, method: str, mode: GenerationMode
) -> None:
    # The admin token opens the admin routes; the device key (which X-API-Key carries first)
    # is checked on the keyed ones. Cases that leave them out are schemathesis's own checks.
    credentials = {"Authorization": f"Bearer {fuzzed.token}", "X-API-Key": str(fuzzed.device_key)}

    @given(case=live_schema[path][method].as_strategy(mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def answers_as_documented(case: Any) -> None:
        # Any bytes fit the photo fields' schema (a schema cannot say "a decodable JPEG"), and
        # the server rightly refuses those that are no photo, with a documented 4xx.
        excluded = [positive_data_acceptance]
        if case.media_type == "multipart/form-data":
            # A form carries only text and bytes: the "null" made up for a file is a file of
            # four bytes, which the server takes and judges as a photo.
            excluded.append(negative_data_rejection)
        case.call_and_validate(
            base_url=fuzzed.url, headers=credentials, timeout=60, excluded_checks=excluded
        )

    answers_as_documented()
