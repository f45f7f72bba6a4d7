"""The contract of :class:`core.app.ProductApi`: one test class, run on each adapter (as huey's
``StorageTests`` runs on every storage).

- :class:`TestInProcess`: the in-process :class:`core.app.App`.
- :class:`TestRemote`: :class:`core.app.remote.RemoteApp` against a live ``classifi serve``
  (gunicorn) on 127.0.0.1. Each of its calls is also made on a *reference*, an in-process
  App on an identical copy of the home acting as the server's admin, and the two answers
  must be the same wire models: a JSON round trip cannot silently differ.

Every test makes its own submissions, so each runs alone too; the calls of a class share
one home, in order, on both sides.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from core.app import App, ProductApi
from core.app.remote import RemoteApp
from core.errors import (
    AuthError,
    BadRequest,
    ClassifiError,
    Conflict,
    InvalidImage,
    NotFound,
    UnknownLabel,
)
from core.wire import ModelState, Prediction, ReviewAction, WireModel
from edge_server.services import ACTOR
from tests.contract.conftest import truncated, variant
from tests.edge.conftest import copy_home, start_server
from tests.homes import edge_settings

pytestmark = pytest.mark.slow

T = TypeVar("T")
SUBMITTER = "contract-suite"
#: Fields that hold when something happened: those set during the suite differ between two
#: homes by the time the calls took, so they compare as "during the suite".
TIME_FIELDS = {"at", "submitted_at", "promoted_at", "created_at", "started_at", "ended_at"}


def comparable(answer: Any, since: datetime) -> Any:
    """An answer as JSON data (wire models as they cross HTTP, errors as class, code and
    message), with the times set during the suite replaced by a marker."""
    if isinstance(answer, WireModel):
        return comparable(answer.to_dict(), since)
    if isinstance(answer, ClassifiError):
        return {"error": type(answer).__name__, "code": answer.code, "message": str(answer)}
    if isinstance(answer, list | tuple):
        return [comparable(item, since) for item in answer]
    if isinstance(answer, dict):
        return {
            key: _time(value, since) if key in TIME_FIELDS else comparable(value, since)
            for key, value in answer.items()
        }
    return answer


def _time(value: str | None, since: datetime) -> str | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value)
    aware = moment.tzinfo is not None
    if (moment if aware else moment.replace(tzinfo=UTC)) < since:
        return value
    return f"during the suite ({'with' if aware else 'without'} a time zone)"


def assert_same(answer: Any, expected: Any, where: str = "answer") -> None:
    """Equal JSON data; numbers within float noise (two processes may sum in other orders)."""
    if isinstance(expected, float) and isinstance(answer, int | float):
        assert math.isclose(answer, expected, rel_tol=1e-4, abs_tol=1e-6), f"{where}: {answer}"
    elif isinstance(expected, dict) and isinstance(answer, dict):
        assert answer.keys() == expected.keys(), f"{where}: {sorted(answer)} != {sorted(expected)}"
        for key in expected:
            assert_same(answer[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list) and isinstance(answer, list):
        assert len(answer) == len(expected), f"{where}: {len(answer)} != {len(expected)} items"
        for index, (item, wanted) in enumerate(zip(answer, expected, strict=True)):
            assert_same(item, wanted, f"{where}[{index}]")
    else:
        assert answer == expected, f"{where}: {answer!r} != {expected!r}"


@dataclass
class Adapters:
    """The adapter under test and, for the remote one, the in-process reference."""

    api: ProductApi
    reference: App | None
    since: datetime

    def call(self, use_case: Callable[[ProductApi], T]) -> T:
        """``use_case`` on the adapter (and on the reference: the answers must match)."""
        answer = use_case(self.api)
        if self.reference is not None:
            assert_same(
                comparable(answer, self.since), comparable(use_case(self.reference), self.since)
            )
        return answer

    def refused(self, use_case: Callable[[ProductApi], object], error: type[ClassifiError]) -> None:
        """``use_case`` raises exactly ``error`` (on the reference too, with the same code and
        message)."""
        with pytest.raises(error) as raised:
            use_case(self.api)
        assert type(raised.value) is error
        if self.reference is not None:
            with pytest.raises(error) as expected:
                use_case(self.reference)
            assert comparable(raised.value, self.since) == comparable(expected.value, self.since)


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.2)


class ProductApiContract:
    """Every use case of the ProductApi. Subclasses give the ``adapters`` fixture."""

    @pytest.fixture(scope="class")
    @classmethod
    def adapters(cls) -> Iterator[Adapters]:
        raise NotImplementedError

    @pytest.fixture
    def photos(self, dataset_photos: dict[str, list[Path]]) -> dict[str, list[Path]]:
        return dataset_photos

    def submit(self, adapters: Adapters, data: bytes, label: str) -> int:
        answer = adapters.call(
            lambda api: api.submit(data, label, source="new.jpg", submitted_by=SUBMITTER)
        )
        assert answer.stored
        return answer.photo_id

    # --- Classify --------------------------------------------------------------------------
    def test_champion(self, adapters: Adapters) -> None:
        champion = adapters.call(lambda api: api.champion())
        assert champion is not None
        assert (champion.version, champion.state) == (1, ModelState.CHAMPION)

    def test_classify_keeps_each_photos_answer(self, adapters, photos) -> None:
        batch = [
            photos["dandelion"][0].read_bytes(),
            truncated(photos["grass"][0]),
            photos["grass"][1].read_bytes(),
        ]
        good, broken, other = adapters.call(lambda api: api.classify(batch))
        assert isinstance(broken, InvalidImage) and broken.code == "corrupt"
        for answer in (good, other):
            assert isinstance(answer, Prediction)
            assert answer.model_version == 1
            assert answer.confidence == pytest.approx(max(answer.probabilities.values()))
        assert adapters.call(lambda api: api.classify([])) == []

    # --- Submissions -----------------------------------------------------------------------
    def test_submit_a_new_photo_then_the_same_again(self, adapters, photos) -> None:
        data = variant(photos["dandelion"][10], 4)
        first = adapters.call(
            lambda api: api.submit(data, "dandelion", source="new.jpg", submitted_by=SUBMITTER)
        )
        assert first.stored and first.status == "pending" and first.model_version == 1
        again = adapters.call(
            lambda api: api.submit(data, "grass", source="again.jpg", submitted_by=SUBMITTER)
        )
        assert not again.stored and again.duplicate is not None
        assert (again.duplicate.kind, again.duplicate_of) == ("exact", first.photo_id)

    def test_a_trained_photo_is_an_exact_duplicate(self, adapters, photos) -> None:
        data = photos["grass"][2].read_bytes()
        answer = adapters.call(lambda api: api.submit(data, "grass", source="known.jpg"))
        assert not answer.stored and answer.duplicate is not None
        assert answer.duplicate.status == "trained"

    def test_submit_with_an_unknown_label_is_refused(self, adapters, photos) -> None:
        data = variant(photos["grass"][11], 4)
        adapters.refused(lambda api: api.submit(data, "tulip", source="new.jpg"), UnknownLabel)

    def test_pending_puts_disagreements_first(self, adapters, photos) -> None:
        # Dandelions proposed as grass: the model disagrees. A grass photo as grass: it agrees.
        disagreeing = [self.submit(adapters, variant(photos["dandelion"][12], 4), "grass")]
        agreeing = [self.submit(adapters, variant(photos["grass"][12], 4), "grass")]
        pending = adapters.call(lambda api: api.pending())
        by_id = {item.id: item for item in pending}
        assert by_id[disagreeing[0]].disagrees and not by_id[agreeing[0]].disagrees
        flags = [item.disagrees for item in pending]
        assert flags == sorted(flags, reverse=True)
        assert adapters.call(lambda api: api.pending(limit=1)) == pending[:1]
        assert adapters.call(lambda api: api.pending(offset=1)) == pending[1:]

    def test_photo_image(self, adapters, photos) -> None:
        data = variant(photos["grass"][13], 4)
        photo_id = self.submit(adapters, data, "grass")
        assert adapters.call(lambda api: api.photo_image(photo_id)) == (data, "image/jpeg")
        adapters.refused(lambda api: api.photo_image(10**6), NotFound)

    # --- Review ----------------------------------------------------------------------------
    def test_review_approves_corrects_and_rejects(self, adapters, photos) -> None:
        approved, corrected, rejected = (
            self.submit(adapters, variant(photos["grass"][14 + n], 4), "grass") for n in range(3)
        )
        (decision,) = adapters.call(lambda api: api.review([approved], ReviewAction.APPROVE))
        assert (decision.photo_id, decision.new_label, decision.status) == (
            approved,
            "grass",
            "validated",
        )
        (decision,) = adapters.call(
            lambda api: api.review([corrected], ReviewAction.APPROVE, "dandelion")
        )
        assert (decision.old_label, decision.new_label) == ("grass", "dandelion")
        (decision,) = adapters.call(lambda api: api.review([rejected], "reject"))
        assert decision.action == "review.reject" and decision.new_label is None
        left = {item.id for item in adapters.call(lambda api: api.pending())}
        assert not left & {approved, corrected, rejected}

    def test_review_refuses_an_unknown_label(self, adapters, photos) -> None:
        photo_id = self.submit(adapters, variant(photos["grass"][17], 4), "grass")
        adapters.refused(
            lambda api: api.review([photo_id], ReviewAction.APPROVE, "tulip"), UnknownLabel
        )
        assert photo_id in {item.id for item in adapters.call(lambda api: api.pending())}

    def test_reviewing_twice_is_a_conflict(self, adapters, photos) -> None:
        photo_id = self.submit(adapters, variant(photos["grass"][18], 4), "grass")
        adapters.call(lambda api: api.review([photo_id], ReviewAction.APPROVE))
        adapters.refused(lambda api: api.review([photo_id], ReviewAction.REJECT), Conflict)

    def test_undo_puts_the_photos_back(self, adapters, photos) -> None:
        ids = [self.submit(adapters, variant(photos["grass"][19 + n], 4), "grass") for n in (0, 1)]
        adapters.call(lambda api: api.review(ids[:1], ReviewAction.APPROVE))
        adapters.call(lambda api: api.review(ids[1:], ReviewAction.REJECT))
        undone = adapters.call(lambda api: api.undo(2))
        assert [(decision.photo_id, decision.status) for decision in undone] == [
            (ids[1], "pending"),
            (ids[0], "pending"),
        ]
        assert set(ids) <= {item.id for item in adapters.call(lambda api: api.pending())}

    def test_audit_log(self, adapters, photos) -> None:
        photo_id = self.submit(adapters, variant(photos["dandelion"][20], 4), "dandelion")
        adapters.call(lambda api: api.review([photo_id], ReviewAction.APPROVE, "grass"))
        newest = adapters.call(lambda api: api.audit_log(3))
        assert len(newest) == 3
        assert (newest[0].action, newest[0].photo_id) == ("review.approve", photo_id)
        assert (newest[0].old_label, newest[0].new_label) == ("dandelion", "grass")
        assert [entry.at for entry in newest] == sorted(
            (entry.at for entry in newest), reverse=True
        )

    # --- Models ----------------------------------------------------------------------------
    def test_versions(self, adapters) -> None:
        versions = adapters.call(lambda api: api.versions())
        assert [(model.version, model.state) for model in versions] == [
            (2, ModelState.CANDIDATE),
            (1, ModelState.CHAMPION),
        ]

    def test_promote_then_roll_back(self, adapters) -> None:
        promoted = adapters.call(lambda api: api.promote(2, reason="contract suite"))
        assert (promoted.version, promoted.state) == (2, ModelState.CHAMPION)
        # A server serves the new champion once it has loaded it, in the background.
        wait_until(lambda: getattr(adapters.api.champion(), "version", None) == 2)
        adapters.call(lambda api: api.champion())
        states = {model.version: model.state for model in adapters.call(lambda api: api.versions())}
        assert states == {1: ModelState.ARCHIVED, 2: ModelState.CHAMPION}

        back = adapters.call(lambda api: api.rollback())
        assert (back.version, back.state) == (1, ModelState.CHAMPION)
        wait_until(lambda: getattr(adapters.api.champion(), "version", None) == 1)
        adapters.call(lambda api: api.champion())

    def test_promoting_an_unknown_version_is_not_found(self, adapters) -> None:
        adapters.refused(lambda api: api.promote(99), NotFound)

    # --- Usage -----------------------------------------------------------------------------
    def test_usage_counts(self, adapters) -> None:
        before = adapters.call(lambda api: api.usage("desktop"))
        adapters.call(lambda api: api.record_usage("desktop", "session"))
        adapters.call(lambda api: api.record_usage("desktop", "photos_classified", 3))
        after = adapters.call(lambda api: api.usage("desktop"))
        assert after["session"] == before.get("session", 0) + 1
        assert after["photos_classified"] == before.get("photos_classified", 0) + 3

    @pytest.mark.parametrize(("event", "count"), [("made_up_event", 1), ("session", 0)])
    def test_usage_outside_the_vocabulary_is_refused(
        self, adapters, event: str, count: int
    ) -> None:
        adapters.refused(lambda api: api.record_usage("desktop", event, count), BadRequest)


class TestInProcess(ProductApiContract):
    @pytest.fixture(scope="class")
    @classmethod
    def adapters(
        cls, edge_home: Path, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[Adapters]:
        since = datetime.now(UTC)
        home = copy_home(edge_home, tmp_path_factory.mktemp("in-process") / "home")
        with App(edge_settings(home), actor=ACTOR) as app:
            yield Adapters(app, None, since)


class TestRemote(ProductApiContract):
    @pytest.fixture(scope="class")
    @classmethod
    def adapters(
        cls, edge_home: Path, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[Adapters]:
        since = datetime.now(UTC)
        root = tmp_path_factory.mktemp("remote")
        reference_home = copy_home(edge_home, root / "reference" / "home")
        # One worker: the champion it serves follows a promotion without a second process's
        # refresh interval in between (tests/edge covers several workers).
        server = start_server(copy_home(edge_home, root / "server" / "home"), "--workers", "1")
        remote = RemoteApp(server.url, admin_token=server.token)
        try:
            with App(edge_settings(reference_home), actor=ACTOR) as reference:
                yield Adapters(remote, reference, since)
        finally:
            remote.close()
            server.stop()

    def test_the_admin_routes_need_the_token(self, adapters) -> None:
        url = adapters.api.url
        with pytest.raises(AuthError):
            RemoteApp(url).pending()
        with pytest.raises(AuthError):
            RemoteApp(url, admin_token="not the token").versions()
