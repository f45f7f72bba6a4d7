"""The retrain policy and the promotion gate, and the model administration around them."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from core.errors import Conflict, ModelError, NotFound
from core.loop.models_admin import champion_history, list_models, promote, rollback
from core.loop.policy import gate, holdout, retrain_check
from core.model.predictor import Predictor
from core.model.training import LabelledPhoto, train_model, training_set
from core.model.versions import champion
from core.registry import AuditEntry, ModelState, ModelVersion, RetrainRun
from tests.installation import System
from tests.loop.conftest import submit_and_approve

pytestmark = pytest.mark.slow


def test_nine_validated_photos_are_not_due_and_ten_are(
    make_system, fresh_photos: dict[str, list[Path]]
) -> None:
    system: System = make_system()
    photos = fresh_photos["dandelion"][:5] + fresh_photos["grass"][:5]
    submit_and_approve(system, photos[:9])

    waiting = retrain_check(system.settings, system.registry, system.store, actor="test")
    assert not waiting.due and waiting.new_validated == 9 and waiting.candidate_version is None
    assert waiting.reason.startswith("9 of 10 new photos")
    with system.registry.session() as session:
        recorded = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "retrain.check")
        ).one()
    assert recorded.detail["reason"] == waiting.reason
    assert len(list_models(system.registry)) == 1

    submit_and_approve(system, photos[9:])
    due = retrain_check(system.settings, system.registry, system.store, actor="test")
    assert due.due and due.new_validated == 10 and due.candidate_version is not None
    assert len(list_models(system.registry)) == 2
    with system.registry.session() as session:
        run = session.scalars(select(RetrainRun)).one()
    assert run.finished_at is not None and run.photos_moved == 10
    assert run.candidate_version_id == due.candidate_version

    again = retrain_check(system.settings, system.registry, system.store, actor="test")
    assert not again.due and again.new_validated == 0


def test_force_retrains_without_new_photos(make_system) -> None:
    system: System = make_system()
    outcome = retrain_check(system.settings, system.registry, system.store, force=True)
    assert outcome.due and outcome.new_validated == 0 and outcome.candidate_version is not None


def test_gate_refuses_a_worse_candidate_and_keeps_the_champion(make_system) -> None:
    system: System = make_system()
    settings, registry, store = system.settings, system.registry, system.store
    before = champion(registry)
    assert before is not None
    flip = {"dandelion": "grass", "grass": "dandelion"}
    flipped = [LabelledPhoto(p.sha256, p.object_key, flip[p.label]) for p in training_set(registry)]
    candidate = train_model(settings, registry, store, photos=flipped, promote_if_first=False)

    decision = gate(settings, registry, store, candidate.version_id, actor="test")
    assert not decision.promoted
    assert decision.candidate_accuracy is not None and decision.candidate_accuracy < 0.5
    assert decision.holdout_size == len(holdout(settings, training_set(registry)))
    current = champion(registry)
    assert current is not None and current.id == before.id
    with registry.session() as session:
        assert session.get(ModelVersion, candidate.version_id).state == ModelState.REFUSED
    predictor = Predictor(settings, registry, store)
    assert predictor.info.version == before.id


def test_gate_floor_applies_even_without_a_better_champion(make_system) -> None:
    system: System = make_system(promotion_floor=1.0)
    settings, registry, store = system.settings, system.registry, system.store
    before = champion(registry)
    flip = {"dandelion": "grass", "grass": "dandelion"}
    # A few labels flipped: a usable model, but not a perfect one.
    photos = [
        LabelledPhoto(p.sha256, p.object_key, flip[p.label] if i % 4 == 0 else p.label)
        for i, p in enumerate(training_set(registry))
    ]
    candidate = train_model(settings, registry, store, photos=photos, promote_if_first=False)
    decision = gate(settings, registry, store, candidate.version_id, actor="test")
    assert not decision.promoted and "below the floor" in decision.reason
    assert champion(registry).id == before.id


def test_promote_by_hand_and_roll_back_in_one_step(make_system) -> None:
    system: System = make_system()
    settings, registry, store = system.settings, system.registry, system.store
    first = champion(registry)
    second = train_model(settings, registry, store, promote_if_first=False)
    predictor = Predictor(settings, registry, store)
    assert predictor.info.version == first.id

    promote(settings, registry, store, second.version_id, actor="alice")
    assert champion(registry).id == second.version_id
    predictor.refresh(force=True)
    predictor.wait_for_swap()
    assert predictor.info.version == second.version_id

    back = rollback(settings, registry, store, actor="bob")
    assert back.version == first.id and champion(registry).id == first.id
    history = champion_history(registry)
    assert [period.version for period in history] == [first.id, second.version_id, first.id]
    assert history[0].actor == "bob" and history[1].ended_at is not None
    states = {model.version: model.state for model in list_models(registry)}
    assert states == {first.id: ModelState.CHAMPION, second.version_id: ModelState.ARCHIVED}


def test_promotion_refuses_a_model_whose_file_is_damaged(make_system) -> None:
    system: System = make_system()
    settings, registry, store = system.settings, system.registry, system.store
    second = train_model(settings, registry, store, promote_if_first=False)
    store.put(second.object_key, b"not the model")
    with pytest.raises(ModelError, match="checksum"):
        promote(settings, registry, store, second.version_id, actor="alice")
    store.delete(second.object_key)
    with pytest.raises(ModelError, match="no file"):
        promote(settings, registry, store, second.version_id, actor="alice")
    with pytest.raises(NotFound):
        promote(settings, registry, store, 999, actor="alice")


def test_rollback_needs_a_previous_champion(make_system) -> None:
    system: System = make_system()
    with pytest.raises(NotFound, match="only champion"):
        rollback(system.settings, system.registry, system.store, actor="bob")


def test_promote_refuses_another_label_set(make_system) -> None:
    system: System = make_system()
    other = System.open(system.settings.home, labels=("dandelion", "grass", "clover"))
    with pytest.raises(Conflict, match="labels"):
        promote(other.settings, other.registry, other.store, 1, actor="alice")
