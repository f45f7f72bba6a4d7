"""Submission quotas: a full review queue, a busy submitter or a nearly full disk refuse a
photo with a clear error before anything of it is stored."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.app import App
from core.errors import InsufficientStorage, QuotaExceeded
from core.registry import Photo
from core.store import PENDING_PREFIX
from tests.installation import System


def stored_counts(system: System) -> tuple[int, int]:
    with system.registry.session() as session:
        rows = int(session.scalar(select(func.count(Photo.id))) or 0)
    return rows, len(list(system.store.list(PENDING_PREFIX)))


def submit(app: App, path: Path, by: str) -> None:
    app.submit(path.read_bytes(), path.parent.name, source=str(path), submitted_by=by)


def test_per_submitter_and_total_caps(make_system, fresh_photos: dict[str, list[Path]]) -> None:
    system: System = make_system(max_pending_per_submitter=2, max_pending_submissions=3)
    app = App(system.settings, actor="admin")
    photos = fresh_photos["grass"]
    submit(app, photos[0], "phone-a")
    submit(app, photos[1], "phone-a")
    before = stored_counts(system)
    with pytest.raises(QuotaExceeded, match="phone-a has 2 submissions waiting"):
        submit(app, photos[2], "phone-a")
    assert stored_counts(system) == before
    submit(app, photos[2], "phone-b")  # another submitter still has room
    with pytest.raises(InsufficientStorage, match="3 submissions already wait"):
        submit(app, photos[3], "phone-c")
    # A review frees room again.
    app.review([app.pending()[0].id], "reject")
    submit(app, photos[3], "phone-c")


def test_a_disk_below_the_floor_refuses_and_stores_nothing(
    make_system, fresh_photos: dict[str, list[Path]]
) -> None:
    free_mb = (make_system("probe").store.free_bytes() or 0) // 2**20
    system: System = make_system(min_free_disk_mb=free_mb + 10_000)
    app = App(system.settings, actor="admin")
    before = stored_counts(system)
    with pytest.raises(InsufficientStorage, match=r"below the \d+ MB floor") as refused:
        submit(app, fresh_photos["dandelion"][0], "phone-a")
    assert refused.value.status == 507
    assert stored_counts(system) == before
