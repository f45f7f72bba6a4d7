"""Submissions: a photo with a proposed label, stored as pending for an admin's review.

The photo is checked like any other (:func:`core.imaging.check_photo`), then:

1. an exact duplicate (same sha256 as a stored photo) is reported, never stored twice;
2. the photo is embedded once, with the champion's backbone (the configured one before the
   first model), and the vector goes into the embedding cache so training never embeds it
   again; the champion's prediction and confidence come from that same vector;
3. a near-duplicate (within ``settings.near_duplicate_distance`` of a stored photo's cached
   embedding) is stored all the same but flagged on its row: the same scene shot again can be
   a fair new example, so the reviewer decides, seeing which photo it resembles;
4. the row goes in first, marked as uploading, then the object, then the mark is cleared, so
   a crash leaves nothing the next run cannot finish or undo (:mod:`core.loop.moves`).
"""

from __future__ import annotations

import logging

import numpy as np
from sqlalchemy import func, select

from core.config import Settings
from core.errors import Conflict, InsufficientStorage, ModelLoading, NoChampion, QuotaExceeded
from core.imaging import CheckedPhoto, check_photo
from core.ingest import photo_row
from core.loop.duplicates import exact_duplicate, nearest_stored
from core.loop.moves import UPLOADING, Checkpoint, finish_move, no_checkpoint
from core.loop.review import check_label
from core.model.backbone import Backbone
from core.model.backbones import get_backbone, resolve_backbone_id
from core.model.embeddings import EmbeddingCache
from core.model.predictor import LoadedModel, Predictor
from core.registry import Photo, PhotoStatus, Registry
from core.store import PENDING_PREFIX, ObjectStore, photo_key
from core.wire import Duplicate, Submission

log = logging.getLogger(__name__)


def _champion_model(predictor: Predictor, *, wait: bool) -> LoadedModel | None:
    """The champion to embed and judge with; None before the first model (or, when not
    waiting, while it loads: the submission is then stored without its opinion)."""
    predictor.refresh()
    try:
        return predictor.ensure_loaded() if wait else predictor.current()
    except (NoChampion, ModelLoading):
        return None


def submit_photo(
    settings: Settings,
    registry: Registry,
    store: ObjectStore,
    data: bytes,
    proposed_label: str,
    *,
    source: str = "upload",
    submitted_by: str | None = None,
    predictor: Predictor | None = None,
    wait_for_model: bool = True,
    checkpoint: Checkpoint = no_checkpoint,
) -> Submission:
    """Check, de-duplicate, classify and store one submitted photo as pending.

    Pass the front end's long-lived ``predictor`` so the champion is not loaded per call.
    Raises :class:`UnknownLabel` for a label outside the label set and an
    :class:`InvalidImage` subclass for bytes that are not a usable photo.
    """
    check_label(settings, proposed_label)
    photo = check_photo(data, settings)
    if existing := exact_duplicate(registry, photo.sha256):
        return _already_known(existing)
    check_room(settings, registry, store, submitted_by)

    model = _champion_model(predictor or Predictor(settings, registry, store), wait=wait_for_model)
    backbone = model.backbone if model else get_backbone(resolve_backbone_id(settings), settings)
    vector = _embedding(settings, registry, store, backbone, photo)
    prediction = confidence = version = None
    if model is not None:
        probabilities = model.head.probabilities(vector[np.newaxis, :])[0]
        best = int(probabilities.argmax())
        prediction, confidence = model.info.labels[best], float(probabilities[best])
        version = model.info.version

    near = nearest_stored(registry, backbone.id, vector, exclude_sha256=photo.sha256)
    if near is not None and near.distance > settings.near_duplicate_distance:
        near = None

    key = photo_key(PENDING_PREFIX, photo.sha256, photo.extension)
    row = photo_row(
        photo,
        store,
        key,
        source,
        status=PhotoStatus.PENDING,
        label=None,  # set when an admin validates it
        proposed_label=proposed_label,
        submitted_by=submitted_by,
        moving_to=UPLOADING,
    )
    row.predicted_label, row.predicted_confidence, row.predicted_by_version = (
        prediction,
        confidence,
        version,
    )
    if near is not None:
        row.near_duplicate_of, row.near_duplicate_distance = near.photo_id, near.distance
    try:
        with registry.session() as session:
            session.add(row)
            session.flush()
            photo_id = row.id
    except Conflict:
        # The same bytes were submitted concurrently and registered first.
        if existing := exact_duplicate(registry, photo.sha256):
            return _already_known(existing)
        raise
    checkpoint("submit:row-added")
    store.put(key, photo.data, photo.content_type)
    checkpoint("submit:object-stored")
    finish_move(registry, store, photo_id)
    log.info("submission %s stored as pending (%s)", photo_id, key)
    return Submission(
        photo_id=photo_id,
        status=PhotoStatus.PENDING,
        stored=True,
        duplicate=near,
        prediction=prediction,
        confidence=confidence,
        model_version=version,
    )


def _already_known(existing: Duplicate) -> Submission:
    """The answer for an exact duplicate: the stored photo stands, nothing is stored."""
    return Submission(
        photo_id=existing.photo_id,
        status=existing.status,
        stored=False,
        duplicate=existing,
        prediction=None,
        confidence=None,
        model_version=None,
    )


def check_room(
    settings: Settings, registry: Registry, store: ObjectStore, submitted_by: str | None
) -> None:
    """Refuse a submission before anything is stored when a quota or the disk is full."""
    with registry.session() as session:
        pending = dict(
            session.execute(
                select(Photo.submitted_by, func.count())
                .where(Photo.status == PhotoStatus.PENDING)
                .group_by(Photo.submitted_by)
            ).all()
        )
    if sum(pending.values()) >= settings.max_pending_submissions:
        raise InsufficientStorage(
            f"{settings.max_pending_submissions} submissions already wait for review (setting "
            "max_pending_submissions): review some, then submit again."
        )
    if pending.get(submitted_by, 0) >= settings.max_pending_per_submitter:
        raise QuotaExceeded(
            f"{submitted_by or 'This submitter'} has {settings.max_pending_per_submitter} "
            "submissions waiting for review (setting max_pending_per_submitter): wait until "
            "they are reviewed."
        )
    free = store.free_bytes()
    if free is not None and free < settings.min_free_disk_mb * 2**20:
        raise InsufficientStorage(
            f"Only {free / 2**20:.0f} MB of disk are free where photos are stored, below the "
            f"{settings.min_free_disk_mb} MB floor (setting min_free_disk_mb): free some space."
        )


def _embedding(
    settings: Settings,
    registry: Registry,
    store: ObjectStore,
    backbone: Backbone,
    photo: CheckedPhoto,
) -> np.ndarray:
    """The photo's vector, from the cache when the same bytes were embedded before."""
    cache = EmbeddingCache(registry, store, backbone, batch_size=settings.embed_batch_size)
    if cached := cache.cached([photo.sha256]):
        return cached[photo.sha256]
    vector = backbone.embed([photo.image])[0]
    cache.store_vectors([photo.sha256], vector[np.newaxis, :])
    return vector
