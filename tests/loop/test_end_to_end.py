"""The whole learning loop on the shared photos, on SQLite + local folder and on
PostgreSQL + S3: ingest 300, train the champion, submit 12, review, retrain, gate, predict."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from core.imaging import check_photo, decode_stored
from core.loop.doctor import check_consistency
from core.loop.policy import retrain_check
from core.loop.review import REJECTED_PREFIX, approve, list_pending, reject
from core.loop.submissions import submit_photo
from core.model.backbones import EFFICIENTNET_LITE0, get_backbone
from core.model.predictor import Predictor
from core.model.versions import champion
from core.registry import AuditEntry, Photo, PhotoStatus
from core.store import CORRECTED_PREFIX, PENDING_PREFIX, label_prefix
from tests.installation import System
from tests.loop.conftest import install, split

PER_LABEL = 150


def reencoded(path: Path) -> bytes:
    """The same photo saved again as JPEG at another quality: new bytes, same picture."""
    buffer = io.BytesIO()
    Image.open(path).convert("RGB").save(buffer, "JPEG", quality=70)
    return buffer.getvalue()


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("backend", ["sqlite+local", "postgresql+s3"])
def test_learning_loop_end_to_end(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    dataset_photos: dict[str, list[Path]],
    dataset_vectors: dict[str, np.ndarray],
) -> None:
    overrides = {}
    if backend == "postgresql+s3":
        overrides = {
            "registry_url": request.getfixturevalue("postgres_url"),
            "store_url": request.getfixturevalue("s3_store_url"),
        }
    system = System.open(tmp_path / "home", **overrides)
    settings, registry, store = system.settings, system.registry, system.store

    # 1-2. Ingest 300 photos (their vectors cached as by a first training) and train.
    base, rest = split(dataset_photos, PER_LABEL)
    install(system, base, dataset_vectors, tmp_path / "source")
    first = champion(registry)
    assert first is not None

    # 3. Submit 12: 7 right, 3 with the wrong label, an exact and a near duplicate.
    fresh = {label: paths[PER_LABEL:] for label, paths in dataset_photos.items()}
    right = fresh["dandelion"][:4] + fresh["grass"][:3]
    wrong = fresh["dandelion"][4:6] + fresh["grass"][3:4]
    other = {"dandelion": "grass", "grass": "dandelion"}
    exact_source, near_source = base["grass"][0], base["dandelion"][0]
    with registry.session() as session:
        by_sha = {p.sha256: p.id for p in session.scalars(select(Photo))}
    exact_id = by_sha[check_photo(exact_source.read_bytes(), settings).sha256]
    near_id = by_sha[check_photo(near_source.read_bytes(), settings).sha256]

    predictor = Predictor(settings, registry, store)
    backbone = get_backbone(EFFICIENTNET_LITE0, settings)
    embedded_before = backbone.images_embedded

    def submit(data: bytes, label: str):  # type: ignore[no-untyped-def]
        return submit_photo(
            settings, registry, store, data, label, submitted_by="visitor", predictor=predictor
        )

    right_ids = [submit(p.read_bytes(), p.parent.name).photo_id for p in right]
    wrong_ids = [submit(p.read_bytes(), other[p.parent.name]).photo_id for p in wrong]
    exact = submit(exact_source.read_bytes(), "grass")
    near = submit(reencoded(near_source), "dandelion")
    assert len(rest) == 2 * (170 - PER_LABEL)

    assert not exact.stored and exact.duplicate_of == exact_id
    assert exact.status == PhotoStatus.TRAINED and exact.duplicate.kind == "exact"
    assert near.stored and near.duplicate_of == near_id and near.duplicate.kind == "near"
    assert near.duplicate.distance <= settings.near_duplicate_distance
    # Each new photo went through the backbone exactly once (the exact duplicate not at all).
    assert backbone.images_embedded - embedded_before == 11
    assert len(list(store.list(PENDING_PREFIX))) == 11

    # 4. Review: the disagreements come first, then the least sure.
    pending = list_pending(registry)
    assert len(pending) == 11
    disagreeing = {p.id for p in pending if p.disagrees}
    assert disagreeing == {p.id for p in pending if p.prediction != p.proposed_label}
    # The champion (~97% accurate) contradicts the wrongly labelled submissions.
    assert len(disagreeing & set(wrong_ids)) >= len(wrong_ids) - 1
    assert [p.disagrees for p in pending] == sorted((p.disagrees for p in pending), reverse=True)
    agreeing = [p.confidence for p in pending if not p.disagrees]
    assert agreeing == sorted(agreeing)
    approve(settings, registry, store, right_ids, actor="admin")
    for photo_id, path in zip(wrong_ids, wrong, strict=True):
        approve(settings, registry, store, [photo_id], actor="admin", label=path.parent.name)
    reject(settings, registry, store, [near.photo_id], actor="admin")
    assert len(list(store.list(CORRECTED_PREFIX))) == 10
    assert list(store.list(REJECTED_PREFIX)) and not list(store.list(PENDING_PREFIX))
    with registry.session() as session:
        corrections = session.scalars(
            select(AuditEntry).where(AuditEntry.photo_id.in_(wrong_ids))
        ).all()
    assert all(
        entry.old_label != entry.new_label and entry.actor == "admin" for entry in corrections
    )

    # 5. The retrain check moves the 10 and trains a candidate, embedding nothing new.
    embedded_before = backbone.images_embedded
    outcome = retrain_check(settings, registry, store, actor="test")
    assert outcome.due and outcome.new_validated == 10 and outcome.candidate_version is not None
    assert backbone.images_embedded == embedded_before
    assert not list(store.list(CORRECTED_PREFIX))
    with registry.session() as session:
        moved = session.scalars(select(Photo).where(Photo.id.in_(right_ids + wrong_ids))).all()
    assert all(p.status == PhotoStatus.TRAINED for p in moved)
    assert all(p.object_key.startswith(label_prefix(str(p.label))) for p in moved)
    assert {p.label for p in moved if p.id in wrong_ids} == {"dandelion", "grass"}

    # 6. The gate decided on the holdout, and predictions come from the champion it left.
    gate = outcome.gate
    assert gate is not None and gate.champion_version == first.id
    assert gate.candidate_accuracy is not None and gate.champion_accuracy is not None
    # Seeded data and training: this candidate, trained on 10 more photos, passes the gate
    # (the refusals are forced in test_policy: a worse candidate, an unreachable floor).
    assert outcome.promoted, gate.reason
    assert gate.candidate_accuracy >= max(settings.promotion_floor, gate.champion_accuracy)
    expected = outcome.candidate_version
    current = champion(registry)
    assert current is not None and current.id == expected
    predictor.refresh(force=True)
    predictor.wait_for_swap()
    image = decode_stored(fresh["grass"][-1].read_bytes())
    assert predictor.predict([image])[0].model_version == expected

    report = check_consistency(settings, registry, store)
    assert report.clean, report.to_dict()
