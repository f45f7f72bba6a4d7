"""The API key in a real browser: a server that requires one (its rule reads the configured
interface, 0.0.0.0, while it listens on 127.0.0.1 only), with and without JavaScript."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.edge.conftest import LiveServer, copy_home, start_gunicorn
from tests.web.conftest import PHONE

pytestmark = [pytest.mark.browser, pytest.mark.slow]

KEY = "phone-key-0123456789"
KEY_STORE = "classifi.apiKey"


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory, edge_home: Path) -> Iterator[LiveServer]:
    home = copy_home(edge_home, tmp_path_factory.mktemp("web-keyed") / "home")
    live = start_gunicorn(home, env={"CLASSIFI_HOST": "0.0.0.0", "CLASSIFI_API_KEYS": KEY})
    yield live
    live.stop()


def new_page(browser: Browser, server: LiveServer, **options: Any) -> Page:
    context = browser.new_context(base_url=server.url, viewport=PHONE, **options)
    return context.new_page()


def choose(page: Page, dataset_dir: Path) -> None:
    page.get_by_label("Or choose photos").set_input_files(
        sorted((dataset_dir / "grass").glob("*.jpg"))[1]
    )


def test_the_script_asks_once_keeps_the_key_in_local_storage_and_forgets_a_wrong_one(
    browser: Browser, keyed_server: LiveServer, dataset_dir: Path
) -> None:
    page = new_page(browser, keyed_server)
    try:
        page.goto("/")
        key = page.get_by_label("This server asks for a key")
        expect(key).to_be_visible()
        choose(page, dataset_dir)
        expect(page.locator(".message")).to_contain_text("A device key is required")
        expect(key).to_be_focused()

        key.fill("wrong-key")
        choose(page, dataset_dir)
        expect(page.locator(".message").first).to_contain_text("The device key is wrong")
        assert page.evaluate(f"localStorage.getItem('{KEY_STORE}')") is None

        key.fill(KEY)
        choose(page, dataset_dir)
        expect(page.locator("article.result .verdict")).to_be_visible()
        assert page.evaluate(f"localStorage.getItem('{KEY_STORE}')") == KEY

        page.reload()  # asked once: the page fills the key in from localStorage
        expect(key).to_be_hidden()  # the box is folded
        assert key.input_value() == KEY
        choose(page, dataset_dir)
        expect(page.locator("article.result .verdict")).to_be_visible()
    finally:
        page.context.close()


def test_without_javascript_a_cookie_keeps_the_key(
    browser: Browser, keyed_server: LiveServer, dataset_dir: Path
) -> None:
    page = new_page(browser, keyed_server, java_script_enabled=False)
    try:
        page.goto("/")
        page.get_by_label("This server asks for a key").fill(KEY)
        choose(page, dataset_dir)
        page.get_by_role("button", name="Classify").click()
        expect(page.locator("article.result .verdict")).to_be_visible()

        page.goto("/")  # the key is not asked again
        expect(page.get_by_text("API key: saved in this browser")).to_be_visible()
        choose(page, dataset_dir)
        page.get_by_role("button", name="Classify").click()
        expect(page.locator("article.result .verdict")).to_be_visible()

        page.get_by_role("link", name="Photos").click()
        page.get_by_role("button", name="Forget the saved API key").click()
        choose(page, dataset_dir)
        page.get_by_role("button", name="Classify").click()
        expect(page.locator(".message")).to_contain_text("A device key is required")
    finally:
        page.context.close()
