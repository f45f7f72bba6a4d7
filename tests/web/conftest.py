"""Fixtures for the web page: apps and live servers on copies of the edge suite's trained home,
and Debian's Chromium, headless, driven by Playwright (one browser per session).

The browser is the system's (/usr/bin/chromium): Playwright never downloads one here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from playwright.sync_api import Browser, sync_playwright

from tests.edge.conftest import EdgeApp, build_app, copy_home
from tests.services import unavailable

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: A phone's viewport (CSS pixels), the size of the saved screenshots.
PHONE = {"width": 390, "height": 844}
#: The README's pictures are replaced only on request (CLASSIFI_UPDATE_SCREENSHOTS=1), so
#: that a test run leaves the checkout as it found it.
README_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token of the first form of a page."""
    found = _CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found[1]


@pytest.fixture
def make_web_app(tmp_path: Path, edge_home: Path) -> Iterator[Callable[..., EdgeApp]]:
    """An app on its own copy of the trained home, with these settings; a plain test client
    (the edge suite's checks answers against the OpenAPI document, which has no pages)."""
    built: list[EdgeApp] = []

    def make(**overrides: Any) -> EdgeApp:
        home = copy_home(edge_home, tmp_path / f"home{len(built)}")
        edge = build_app(home, **overrides)
        edge.app.test_client_class = FlaskClient
        built.append(edge)
        return edge

    yield make
    for edge in built:
        edge.services.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        unavailable("Debian's Chromium is missing: apt-get install chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()
