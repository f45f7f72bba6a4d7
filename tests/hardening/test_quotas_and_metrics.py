"""Storage quotas over HTTP (429 for a submitter's, 507 for the server's, nothing stored) and
metrics that no client can add a series to: 10,000 made-up usage events, paths and methods
leave the number of series in /metrics unchanged."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.registry import Photo
from tests.edge.conftest import EdgeApp
from tests.hardening.conftest import upload

pytestmark = pytest.mark.slow

FLOOD = 10_000
#: Rates that a flood from one test address does not reach: these tests are about series.
UNLIMITED = {"rate_limit_other": "1000000 per minute", "rate_limit_sign_in": "1000000 per minute"}


def stored(edge: EdgeApp) -> tuple[int, list[Path]]:
    """Rows in the registry and files in the bucket."""
    with edge.services.app.registry.session() as session:
        rows = session.scalar(select(func.count()).select_from(Photo))
    files = sorted(path for path in (edge.settings.home / "bucket").rglob("*") if path.is_file())
    return int(rows or 0), files


@pytest.mark.parametrize(
    ("settings", "status", "code", "says"),
    [
        ({"max_pending_per_submitter": 1}, 429, "quota_exceeded", "max_pending_per_submitter"),
        ({"max_pending_submissions": 1}, 507, "insufficient_storage", "max_pending_submissions"),
        ({"min_free_disk_mb": 10**9}, 507, "insufficient_storage", "min_free_disk_mb"),
    ],
)
def test_a_full_quota_refuses_before_anything_is_stored(
    make_app: Callable[..., EdgeApp],
    new_photo: Callable[[int], bytes],
    settings: dict[str, int],
    status: int,
    code: str,
    says: str,
) -> None:
    edge = make_app(host="0.0.0.0", **settings)
    client = edge.client()
    key = {"X-API-Key": edge.services.app.create_device_key("phone")}
    if "min_free_disk_mb" not in settings:  # fill the quota first
        first = client.post("/submissions", data=upload(new_photo(40), label="grass"), headers=key)
        assert first.status_code == 201
    before = stored(edge)
    refused = client.post("/submissions", data=upload(new_photo(41), label="grass"), headers=key)
    assert refused.status_code == status
    assert refused.get_json()["error"]["code"] == code
    assert says in refused.get_json()["error"]["message"]
    assert stored(edge) == before  # no row, no file: nothing half-stored


def series(text: str) -> set[str]:
    return {line.rsplit(" ", 1)[0] for line in text.splitlines() if not line.startswith("#")}


def test_made_up_events_paths_and_methods_add_no_series(make_app: Callable[..., EdgeApp]) -> None:
    edge = make_app(**UNLIMITED)
    client = edge.client()
    # Every series these requests may touch exists after one of each.
    client.post("/usage", json={"event": "made_up"})
    client.get("/no/such/page")
    client.get("/admin/submissions/1/image")
    client.open("/health/live", method="BREW")
    client.get("/metrics")  # a scrape is counted after its own answer
    before = series(client.get("/metrics").text)

    for n in range(FLOOD):
        answer = client.post("/usage", json={"event": f"event_{n}", "count": 1})
        assert answer.status_code == 400
    for n in range(FLOOD // 2):
        assert client.get(f"/made/up/{n}").status_code == 404
        assert client.get(f"/admin/submissions/{n}/image").status_code == 401
    for n in range(FLOOD):
        method = "".join(chr(ord("A") + int(digit)) for digit in f"{n:05d}")  # AAAAA, AAAAB...
        assert client.open("/health/live", method=method).status_code == 405

    after = series(client.get("/metrics").text)
    assert after == before
    assert not any("event_" in line or "/made/up" in line or "AAAA" in line for line in after)
