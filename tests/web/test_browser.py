"""The web page in a real browser: headless Chromium against a live ``classifi serve``.

One server for the module, on its own copy of the trained home; each test opens its own
browser context (cookies and storage of its own) at phone size.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from tests.edge.conftest import LiveServer, copy_home, start_server
from tests.edge.photos import encode
from tests.web.conftest import PHONE, README_SCREENSHOTS

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, edge_home: Path) -> Iterator[LiveServer]:
    live = start_server(copy_home(edge_home, tmp_path_factory.mktemp("web-live") / "home"))
    yield live
    live.stop()


@pytest.fixture
def open_context(browser: Browser, server: LiveServer) -> Iterator[Any]:
    """Open browser contexts on the server (phone-sized unless told); closed after the test."""
    opened: list[BrowserContext] = []

    def open_one(**options: Any) -> BrowserContext:
        options = {"viewport": PHONE, "is_mobile": True, "has_touch": True, **options}
        opened.append(browser.new_context(base_url=server.url, **options))
        return opened[-1]

    yield open_one
    for context in opened:
        context.close()


@pytest.fixture
def phone(open_context: Any) -> Page:
    page: Page = open_context().new_page()
    return page


def photo(dataset_dir: Path, label: str, index: int = 0) -> Path:
    return sorted((dataset_dir / label).glob("*.jpg"))[index]


def as_file(path: Path) -> dict[str, Any]:
    """A shared photo as a file for an input (which takes paths or payloads, not both)."""
    return {"name": path.name, "mimeType": "image/jpeg", "buffer": path.read_bytes()}


def fresh_photo(dataset_dir: Path, label: str, index: int) -> dict[str, Any]:
    """A photo no one has sent yet (a shared one, mirrored): a file for an input to send."""
    mirrored = Image.open(photo(dataset_dir, label, index)).transpose(
        Image.Transpose.FLIP_LEFT_RIGHT
    )
    data = encode(mirrored, "JPEG", quality=90)
    return {"name": f"fresh-{label}-{index}.jpg", "mimeType": "image/jpeg", "buffer": data}


def api_label(server: LiveServer, path: Path) -> str:
    """What the REST API says of a photo: the page must say the same."""
    answer = requests.post(f"{server.url}/predict", files={"file": path.open("rb")}, timeout=60)
    assert answer.status_code == 200, answer.text
    label: str = answer.json()["prediction"]
    return label


def shown_width(image: Locator) -> int:
    """The width of the picture an ``<img>`` shows, once loaded (0: it shows none)."""
    image.scroll_into_view_if_needed()  # the admin page's photos load lazily
    width: int = image.evaluate("image => image.decode().then(() => image.naturalWidth, () => 0)")
    return width


def sign_in(page: Page, token: str) -> None:
    page.goto("/admin")
    page.get_by_label("Admin token").fill(token)
    with page.expect_navigation():  # the admin page's scripts have run once it has loaded
        page.get_by_role("button", name="Sign in").click()


def test_a_shared_photo_gets_its_label(phone: Page, server: LiveServer, dataset_dir: Path) -> None:
    path = photo(dataset_dir, "dandelion", 3)
    phone.goto("/")
    phone.get_by_label("Or choose photos").set_input_files(path)
    card = phone.locator("article.result").first
    card.locator(".verdict").wait_for()
    assert card.locator(".verdict .label").inner_text() == api_label(server, path)
    assert re.fullmatch(r"\d{1,3}%", card.locator(".verdict .confidence").inner_text())
    assert card.locator("img.preview").is_visible()  # the photo itself, from the browser
    assert card.locator("h2").inner_text() == path.name


def test_several_photos_in_one_go_and_a_corrupt_one_says_what_is_wrong(
    phone: Page, dataset_dir: Path
) -> None:
    truncated = photo(dataset_dir, "grass", 4).read_bytes()[:3000]
    files: list[Any] = [
        as_file(photo(dataset_dir, "grass", 5)),
        {"name": "notes.jpg", "mimeType": "image/jpeg", "buffer": b"shopping list: eggs"},
        {"name": "cut-short.jpg", "mimeType": "image/jpeg", "buffer": truncated},
    ]
    phone.goto("/")
    phone.get_by_label("Or choose photos").set_input_files(files)
    cards = phone.locator("article.result")
    cards.nth(2).wait_for()
    assert cards.count() == 3
    assert cards.nth(0).locator(".verdict .label").inner_text() in ("dandelion", "grass")
    not_an_image = cards.nth(1).locator(".error").inner_text()
    assert "notes.jpg" in cards.nth(1).inner_text()
    assert "Not a supported image" in not_an_image and "JPEG" in not_an_image
    assert "corrupt or truncated" in cards.nth(2).locator(".error").inner_text()
    assert cards.nth(0).locator("img.preview").is_visible()
    assert cards.nth(1).locator("img.preview").is_hidden()  # no broken picture for a bad file
    body = phone.locator("body").inner_text()
    assert "Traceback" not in body and "Internal Server Error" not in body


def test_propose_a_label_then_approve_it_and_undo_as_admin(
    open_context: Any, server: LiveServer, dataset_dir: Path
) -> None:
    page = open_context().new_page()
    page.goto("/")
    page.get_by_label("Or choose photos").set_input_files(fresh_photo(dataset_dir, "dandelion", 7))
    card = page.locator("article.result").first
    card.locator(".verdict").wait_for()
    card.get_by_label("dandelion").check()
    card.get_by_role("button", name="Send for review").click()
    answer = card.locator(".proposed")
    answer.wait_for()
    found = re.search(
        r"sent for review as #(\d+), proposed as dandelion", answer.inner_text(), re.I
    )
    assert found, answer.inner_text()
    photo_id = found[1]
    # The same photo again: the duplicate check answers, nothing is stored twice.
    page.get_by_label("Or choose photos").set_input_files(fresh_photo(dataset_dir, "dandelion", 7))
    again = page.locator("article.result").first
    again.locator(".verdict").wait_for()
    again.get_by_role("button", name="Send for review").click()
    again.locator(".proposed").wait_for()
    assert f"Already known: this exact photo is #{photo_id} (pending)" in again.inner_text()

    admin = open_context().new_page()
    sign_in(admin, server.token)
    review = admin.locator("article.review", has=admin.locator(f"#photo-{photo_id}"))
    assert "proposed as dandelion" in review.inner_text()
    assert shown_width(review.locator("img")) > 0  # the submitted photo itself
    review.get_by_role("button", name="Approve as dandelion").click()
    expect(admin.locator(".flash")).to_have_text(f"Photo #{photo_id} approved as dandelion.")
    expect(admin.locator(f"#photo-{photo_id}")).to_have_count(0)
    latest = admin.locator("ol.audit li").first
    expect(latest).to_contain_text(
        f"edge-admin: review.approve #{photo_id} (dandelion → dandelion)"
    )

    admin.get_by_role("button", name="Undo the last decision").click()
    expect(admin.locator(".flash")).to_have_text(f"Photo #{photo_id} is pending again.")
    expect(admin.locator(f"#photo-{photo_id}")).to_have_count(1)
    expect(latest).to_contain_text(f"review.undo #{photo_id}")


def test_a_swipe_left_rejects_and_undo_brings_it_back(
    open_context: Any, server: LiveServer, dataset_dir: Path
) -> None:
    page = open_context().new_page()
    page.goto("/")
    page.get_by_label("Or choose photos").set_input_files(fresh_photo(dataset_dir, "grass", 9))
    card = page.locator("article.result").first
    card.locator(".verdict").wait_for()
    card.get_by_role("button", name="Send for review").click()
    photo_id = re.search(r"#(\d+)", card.locator(".proposed").inner_text())[1]  # type: ignore[index]

    admin = open_context().new_page()
    sign_in(admin, server.token)
    review = admin.locator("article.review", has=admin.locator(f"#photo-{photo_id}"))
    review.scroll_into_view_if_needed()
    box = review.locator("h2").bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    admin.mouse.move(box["x"] + 250, y)
    admin.mouse.down()
    for step in range(1, 11):  # a finger dragged 200 px to the left
        admin.mouse.move(box["x"] + 250 - 20 * step, y)
    with admin.expect_navigation():
        admin.mouse.up()
    expect(admin.locator(".flash")).to_have_text(f"Photo #{photo_id} rejected.")
    expect(admin.locator("ol.audit li").first).to_contain_text(f"review.reject #{photo_id}")
    admin.get_by_role("button", name="Undo the last decision").click()
    expect(admin.locator(f"#photo-{photo_id}")).to_have_count(1)


def test_a_wrong_admin_token_is_refused(phone: Page) -> None:
    phone.goto("/admin")
    phone.get_by_label("Admin token").fill("not-the-token")
    with phone.expect_response(lambda response: "/admin/sign-in" in response.url) as answer:
        phone.get_by_role("button", name="Sign in").click()
    assert answer.value.status == 401
    expect(phone.locator(".error")).to_contain_text("That is not the admin token")
    assert phone.locator("article.review").count() == 0
    phone.goto("/admin")  # still signed out
    assert phone.get_by_label("Admin token").is_visible()


def test_every_post_needs_the_csrf_token(
    phone: Page, server: LiveServer, dataset_dir: Path
) -> None:
    phone.goto("/")  # the session (and its token) now exist in this context
    token = re.search(r'name="csrf_token" value="([^"]+)"', phone.content())[1]  # type: ignore[index]
    jpeg = photo(dataset_dir, "grass", 2).read_bytes()
    upload = {"name": "g.jpg", "mimeType": "image/jpeg", "buffer": jpeg}
    posts: list[tuple[str, dict[str, Any]]] = [
        ("/classify", {"photos": upload}),
        ("/propose", {"photo": upload, "label": "grass"}),
        ("/admin/sign-in", {"token": server.token}),
        ("/admin/undo", {}),
        ("/forget-key", {}),
    ]
    for path, fields in posts:
        for sent in ({}, {"csrf_token": "forged"}):
            answer = phone.request.post(path, multipart={**fields, **sent}, max_redirects=0)
            assert answer.status == 400, (path, sent, answer.status)
            assert "This form has expired" in answer.text(), path
    # The same session with its token is let through.
    answer = phone.request.post("/classify", multipart={"photos": upload, "csrf_token": token})
    assert answer.status == 200 and "verdict" in answer.text()


def test_without_javascript_the_forms_post_and_pages_answer(
    open_context: Any, server: LiveServer, dataset_dir: Path
) -> None:
    page = open_context(java_script_enabled=False).new_page()
    page.goto("/")
    chosen = photo(dataset_dir, "grass", 11)
    page.get_by_label("Or choose photos").set_input_files(chosen)
    with page.expect_navigation():
        page.get_by_role("button", name="Classify").click()
    assert page.url == f"{server.url}/classify"
    card = page.locator("article.result")
    assert card.locator(".verdict .label").inner_text() == api_label(server, chosen)
    # Proposing a label: without a script the photo is picked again.
    card.get_by_label("dandelion").check()
    card.get_by_label("Pick the same photo again").set_input_files(
        fresh_photo(dataset_dir, "grass", 11)
    )
    with page.expect_navigation():
        card.get_by_role("button", name="Send for review").click()
    assert "sent for review as #" in page.locator(".proposed").inner_text().lower()

    sign_in(page, server.token)
    expect(page.get_by_role("heading", name="Review")).to_be_visible()
    expect(page.locator("article.review").first).to_be_visible()


@pytest.mark.parametrize("path", ["/", "/admin", "/admin/signed-in"])
def test_a_320_px_screen_has_no_sideways_scroll_and_big_labelled_controls(
    open_context: Any, server: LiveServer, dataset_dir: Path, path: str
) -> None:
    page = open_context(viewport={"width": 320, "height": 640}).new_page()
    if path == "/admin/signed-in":
        sign_in(page, server.token)
    else:
        page.goto(path)
    if path == "/":
        page.get_by_label("Or choose photos").set_input_files(photo(dataset_dir, "dandelion", 1))
        page.locator("article.result .verdict").first.wait_for()
    page.wait_for_load_state("load")  # the style sheet applied: a busy server sends it late
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 320, f"{path} is {width} px wide"
    report = page.evaluate(
        """() => [...document.querySelectorAll(
            'button, input:not([type=hidden]), select, summary, a.button, .top a')]
          .filter(element => element.getClientRects().length && !element.closest('[hidden]'))
          .map(element => {
            const box = element.getBoundingClientRect();
            const named = element.labels?.length || element.getAttribute('aria-label')
              || element.textContent.trim();
            return {what: element.outerHTML.slice(0, 80), height: box.height,
                    width: box.width, named: Boolean(named)};
          })"""
    )
    assert report, "no control found"
    for control in report:
        assert control["named"], f"no label: {control['what']}"
        if "radio" not in control["what"]:  # a radio's whole label row is the target
            assert control["height"] >= 44 and control["width"] >= 44, control


def test_light_and_dark_themes_follow_the_system(open_context: Any) -> None:
    colours = {}
    for scheme in ("light", "dark"):
        page = open_context(color_scheme=scheme).new_page()
        page.goto("/")
        colours[scheme] = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert colours["light"] != colours["dark"]


def test_page_views_and_buttons_are_counted_in_metrics(phone: Page, server: LiveServer) -> None:
    def counted() -> dict[str, float]:
        text = requests.get(f"{server.url}/metrics", timeout=10).text
        return {
            event: float(value)
            for event, value in re.findall(
                r'^classifi_web_events_total\{event="(\w+)"\} (\S+)$', text, re.MULTILINE
            )
        }

    before = counted()
    assert {"page_view", "predict", "propose_label", "admin_sign_in", "undo"} <= set(before)
    phone.goto("/")
    phone.goto("/admin")
    after = counted()
    assert after["page_view"] == before["page_view"] + 1
    assert after["admin_page_view"] == before["admin_page_view"] + 1


def test_phone_screenshots_of_both_pages(
    open_context: Any, server: LiveServer, dataset_dir: Path, tmp_path: Path
) -> None:
    """The README's pictures: the photo page with results, the admin page with a photo."""
    update = os.environ.get("CLASSIFI_UPDATE_SCREENSHOTS") == "1"
    folder = README_SCREENSHOTS if update else tmp_path
    page = open_context(color_scheme="light").new_page()
    page.goto("/")
    page.get_by_label("Or choose photos").set_input_files(
        [as_file(photo(dataset_dir, "dandelion", 0)), fresh_photo(dataset_dir, "grass", 13)]
    )
    page.locator("article.result .verdict").nth(1).wait_for()
    page.locator("article.result").nth(1).get_by_role("button", name="Send for review").click()
    page.locator(".proposed").wait_for()
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=folder / "web-page.png")

    admin = open_context(color_scheme="light").new_page()
    sign_in(admin, server.token)
    assert shown_width(admin.locator("article.review img").first) > 0
    admin.evaluate("window.scrollTo(0, 0)")
    admin.screenshot(path=folder / "web-admin.png")
    for name in ("web-page.png", "web-admin.png"):
        with Image.open(folder / name) as shot:
            assert shot.size == (PHONE["width"], PHONE["height"]), name
