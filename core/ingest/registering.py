"""Storing and registering: the checked photos of a listing, stored once and registered.

Each photo is stored once under ``raw/<label>/<sha256><ext>`` and then registered. The object
is written before its row, so a run killed halfway leaves at worst an object without a row,
which the next run completes. Rows are added a batch per transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from typing import Any, NamedTuple

from sqlalchemy import select

from core.config import Settings
from core.errors import Conflict
from core.imaging import CheckedPhoto
from core.ingest.fetching import Fetcher, fetch_photo
from core.ingest.sources import Listing, Skipped, SourceItem
from core.registry import Photo, PhotoStatus, Registry
from core.store import ObjectStore, label_prefix, photo_key

BATCH_SIZE = 32  # photos per registry transaction: a kill loses at most one batch of rows
WORKERS = 4  # parallel reads, downloads, checks and uploads

ProgressCallback = Callable[[int, int], None]  # (done, total)


@dataclass
class IngestReport:
    """What one ingest did: photos added, already present, and skipped with their reasons."""

    added: int = 0
    already_present: int = 0
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.added + self.already_present + len(self.skipped)

    def skipped_by_reason(self) -> dict[str, int]:
        return dict(sorted(Counter(item.reason for item in self.skipped).items()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "already_present": self.already_present,
            "skipped": len(self.skipped),
            "skipped_by_reason": self.skipped_by_reason(),
            "skipped_items": [item._asdict() for item in self.skipped],
        }


class _Checked(NamedTuple):
    item: SourceItem
    photo: CheckedPhoto


def _batched(items: list[SourceItem], size: int) -> Iterator[list[SourceItem]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def photo_row(
    photo: CheckedPhoto, store: ObjectStore, key: str, source: str, **fields: Any
) -> Photo:
    """The registry row of a checked photo stored at ``key``; ``fields`` add the status,
    the label and what else the caller knows."""
    return Photo(
        url_source=source,
        url_s3=store.url_for(key),
        object_key=key,
        sha256=photo.sha256,
        width=photo.width,
        height=photo.height,
        size_bytes=len(photo.data),
        image_format=photo.image_format,
        **fields,
    )


def _new_row(entry: _Checked, store: ObjectStore, key: str) -> Photo:
    return photo_row(
        entry.photo,
        store,
        key,
        entry.item.location,
        status=PhotoStatus.TRAINED,
        label=entry.item.label,
    )


class _Ingestor:
    def __init__(
        self, settings: Settings, registry: Registry, store: ObjectStore, pool: ThreadPoolExecutor
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.store = store
        self.pool = pool
        self.report = IngestReport()

    def run_batch(self, fetcher: Fetcher, batch: list[SourceItem]) -> None:
        checked = []
        outcomes = self.pool.map(partial(fetch_photo, fetcher, self.settings), batch)
        for item, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Skipped):
                self.report.skipped.append(outcome)
            else:
                checked.append(_Checked(item, outcome))
        self._register(self._only_new(checked))

    def _only_new(self, checked: list[_Checked]) -> list[_Checked]:
        """Drop photos already registered (one query per batch) or repeated within the batch."""
        if not checked:
            return []
        with self.registry.session() as session:
            known = {
                sha: (label, status)
                for sha, label, status in session.execute(
                    select(Photo.sha256, Photo.label, Photo.status).where(
                        Photo.sha256.in_({entry.photo.sha256 for entry in checked})
                    )
                )
            }
        new = []
        for entry in checked:
            sha, label = entry.photo.sha256, entry.item.label
            if sha not in known:
                known[sha] = (label, PhotoStatus.TRAINED)
                new.append(entry)
                continue
            known_label, status = known[sha]
            if known_label == label and status == PhotoStatus.TRAINED:
                self.report.already_present += 1
            else:
                self.report.skipped.append(
                    Skipped(
                        entry.item.location,
                        "label_conflict",
                        f"The same photo is already registered as {known_label or 'unlabelled'} "
                        f"({status}); it is not relabelled.",
                    )
                )
        return new

    def _register(self, new: list[_Checked]) -> None:
        if not new:
            return
        keys = [
            photo_key(label_prefix(entry.item.label), entry.photo.sha256, entry.photo.extension)
            for entry in new
        ]

        def put(entry: _Checked, key: str) -> None:
            self.store.put(key, entry.photo.data, entry.photo.content_type)

        # The objects first: a crash before the rows leaves objects the next run re-registers.
        list(self.pool.map(put, new, keys))
        try:
            with self.registry.session() as session:
                session.add_all(
                    _new_row(entry, self.store, key) for entry, key in zip(new, keys, strict=True)
                )
            self.report.added += len(new)
        except Conflict:
            # Another ingest registered some of these meanwhile: keep what is still new.
            for entry, key in zip(new, keys, strict=True):
                try:
                    with self.registry.session() as session:
                        session.add(_new_row(entry, self.store, key))
                    self.report.added += 1
                except Conflict:
                    self.report.already_present += 1


def ingest(
    listing: Listing,
    settings: Settings,
    registry: Registry,
    store: ObjectStore,
    *,
    progress: ProgressCallback | None = None,
) -> IngestReport:
    """Ingest every photo of ``listing`` (see :func:`read_source`); bad ones are reported.

    The store's and the registry's errors propagate: a bad photo is skipped, a down store stops.
    """
    items, skipped = listing
    total = len(items) + len(skipped)
    fetcher = Fetcher(settings)
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="ingest") as pool:
        ingestor = _Ingestor(settings, registry, store, pool)
        ingestor.report.skipped.extend(skipped)
        done = len(skipped)
        if progress:
            progress(done, total)
        for batch in _batched(items, BATCH_SIZE):
            ingestor.run_batch(fetcher, batch)
            done += len(batch)
            if progress:
                progress(done, total)
    return ingestor.report
