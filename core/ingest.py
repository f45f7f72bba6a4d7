"""Ingest labelled photos into the store and the registry.

Sources: a folder with one sub-folder per label, a CSV manifest of ``url,label`` rows (http(s)
URLs or local paths), or ``default``, the specification's remote dataset.

Each photo is read, checked (:func:`core.imaging.check_photo`), stored once under
``raw/<label>/<sha256><ext>`` and then registered. The object is written before its row, so a
run killed halfway leaves at worst an object without a row, which the next run completes. A bad
photo is skipped with its reason and never stops the run.
"""

from __future__ import annotations

import csv
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

import requests
from sqlalchemy import select

from core.config import Settings
from core.errors import Conflict, InvalidImage, SourceError
from core.imaging import PHOTO_SUFFIXES, CheckedPhoto, check_photo
from core.registry import Photo, PhotoStatus, Registry
from core.store import ObjectStore, label_prefix, photo_key

DEFAULT_SOURCE = "default"
# The specification's dataset: 200 photos per label in the public repo btphan95/greenr-airflow.
DEFAULT_BASE_URL = "https://raw.githubusercontent.com/btphan95/greenr-airflow/master/data"
DEFAULT_LABELS = ("dandelion", "grass")
DEFAULT_PER_LABEL = 200

BATCH_SIZE = 32  # photos per registry transaction: a kill loses at most one batch of rows
WORKERS = 4  # parallel reads, downloads, checks and uploads
CHUNK_BYTES = 64 * 1024

ProgressCallback = Callable[[int, int], None]  # (done, total)


class Skipped(NamedTuple):
    source: str
    reason: str  # a short stable code, e.g. "unknown_label", "corrupt", "unreachable"
    message: str


@dataclass
class IngestReport:
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


@dataclass(frozen=True)
class SourceItem:
    """One photo to ingest: where it is (path or URL, recorded as ``url_source``) and its label."""

    location: str
    label: str


class _Skip(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# --- Reading the source ---------------------------------------------------------------------


class Listing(NamedTuple):
    """What a source names: the photos to read, and the entries skipped without reading."""

    items: list[SourceItem]
    skipped: list[Skipped]


def read_source(source: str, settings: Settings) -> Listing:
    """List the photos of ``source`` (a folder, a .csv manifest or ``default``).

    Raises :class:`SourceError` when the source itself is missing or unreadable.
    """
    if source == DEFAULT_SOURCE:
        entries: Iterable[SourceItem | Skipped] = default_entries()
    else:
        path = Path(source).expanduser()
        if path.is_dir():
            entries = _folder_entries(path.resolve())
        elif path.is_file() and path.suffix.lower() == ".csv":
            entries = _manifest_entries(path.resolve())
        elif path.exists():
            raise SourceError(
                f"Cannot ingest {source}: give a folder with one sub-folder per label, "
                f"a .csv manifest of url,label rows, or '{DEFAULT_SOURCE}'."
            )
        else:
            raise SourceError(f"The ingest source {source} does not exist.")

    items: list[SourceItem] = []
    skipped: list[Skipped] = []
    for entry in entries:
        if isinstance(entry, Skipped):
            skipped.append(entry)
        elif entry.label in settings.labels:
            items.append(entry)
        elif not entry.label:
            skipped.append(
                Skipped(
                    entry.location,
                    "unknown_label",
                    "The photo is not inside a label folder: move it into a sub-folder named "
                    f"after its label ({', '.join(settings.labels)}).",
                )
            )
        else:
            skipped.append(
                Skipped(
                    entry.location,
                    "unknown_label",
                    f"Label {entry.label!r} is not one of the configured labels "
                    f"({', '.join(settings.labels)}); change the setting 'labels' to add it.",
                )
            )
    return Listing(items, skipped)


def default_entries() -> Iterator[SourceItem]:
    for label in DEFAULT_LABELS:
        for index in range(DEFAULT_PER_LABEL):
            yield SourceItem(f"{DEFAULT_BASE_URL}/{label}/{index:08d}.jpg", label)


def _visible_files(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def _folder_entries(root: Path) -> Iterator[SourceItem]:
    try:
        children = sorted(root.iterdir())
    except OSError as exc:
        raise SourceError(f"Cannot read the folder {root}: {exc}") from None
    for child in children:
        if child.name.startswith("."):
            continue  # hidden files (.DS_Store and the like) are not photos
        if child.is_dir():
            for path in _visible_files(child):
                yield SourceItem(str(path), child.name)
        elif child.suffix.lower() in PHOTO_SUFFIXES:
            yield SourceItem(
                str(child), ""
            )  # a photo outside any label folder: reported, not ingested
        # Other loose files (README, LICENSE, a manifest) document the folder; they are no photos.


def _manifest_entries(manifest: Path) -> Iterator[SourceItem | Skipped]:
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SourceError(f"Cannot read the manifest {manifest}: {exc}") from None
    for line, row in enumerate(rows, start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells) or (line == 1 and [cell.lower() for cell in cells] == ["url", "label"]):
            continue  # blank lines and the optional header
        if len(cells) != 2 or not all(cells):
            yield Skipped(
                f"{manifest}:{line}",
                "bad_row",
                f"Line {line} is {row!r}: each row of the manifest must be url,label.",
            )
            continue
        location, label = cells
        if urlsplit(location).scheme not in ("http", "https"):
            location = str(_local_path(location, manifest.parent))
        yield SourceItem(location, label)


def _local_path(location: str, base: Path) -> Path:
    """A manifest path: ``file://`` URL, absolute, or relative to the manifest's folder."""
    if location.startswith("file://"):
        return Path(unquote(urlsplit(location).path))
    path = Path(location).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


# --- Fetching and checking one photo --------------------------------------------------------


class _Fetcher:
    """Reads local files and downloads URLs with a size cap; remembers hosts that are down."""

    def __init__(self, settings: Settings) -> None:
        self.max_bytes = settings.max_upload_bytes
        self.timeout = settings.download_timeout_s
        self._local = threading.local()
        self._down_hosts: set[str] = set()

    def read(self, location: str) -> bytes:
        if urlsplit(location).scheme in ("http", "https"):
            return self._download(location)
        return self._read_file(Path(location))

    def _too_large(self, size: int) -> _Skip:
        return _Skip(
            "too_large",
            f"The file is {size / 1e6:.1f} MB or more, above the {self.max_bytes / 1e6:.1f} MB "
            "limit (setting max_upload_bytes).",
        )

    def _read_file(self, path: Path) -> bytes:
        try:
            size = path.stat().st_size
            if size > self.max_bytes:
                raise self._too_large(size)
            return path.read_bytes()
        except FileNotFoundError:
            raise _Skip("missing", f"The file {path} does not exist.") from None
        except OSError as exc:
            raise _Skip("unreadable", f"Cannot read {path}: {exc.strerror or exc}") from None

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _download(self, url: str) -> bytes:
        host = urlsplit(url).netloc
        if host in self._down_hosts:
            raise _Skip("unreachable", f"{host} did not answer earlier in this run.")
        # The timeout bounds each socket wait; the deadline bounds a server that trickles bytes.
        deadline = time.monotonic() + self.timeout
        try:
            with self._session().get(url, stream=True, timeout=self.timeout) as response:
                if response.status_code >= 400:
                    raise _Skip("http_error", f"The server answered HTTP {response.status_code}.")
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > self.max_bytes:
                    raise self._too_large(int(declared))
                data = bytearray()
                for chunk in response.iter_content(CHUNK_BYTES):
                    data += chunk
                    if len(data) > self.max_bytes:
                        raise self._too_large(len(data))
                    if time.monotonic() > deadline:
                        raise requests.Timeout("the download took too long")
                return bytes(data)
        except (requests.ConnectionError, requests.Timeout) as exc:
            self._down_hosts.add(host)
            raise _Skip(
                "unreachable",
                f"{host} cannot be reached within {self.timeout:g} s "
                f"(setting download_timeout_s): {type(exc).__name__}.",
            ) from None
        except requests.RequestException as exc:
            raise _Skip("download_failed", f"The download failed: {exc}") from None


def _load(fetcher: _Fetcher, settings: Settings, item: SourceItem) -> CheckedPhoto | Skipped:
    try:
        return check_photo(fetcher.read(item.location), settings)
    except _Skip as skip:
        return Skipped(item.location, skip.reason, skip.message)
    except InvalidImage as exc:
        return Skipped(item.location, exc.code, str(exc))


# --- Storing and registering ----------------------------------------------------------------


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

    def run_batch(self, fetcher: _Fetcher, batch: list[SourceItem]) -> None:
        checked = []
        outcomes = self.pool.map(partial(_load, fetcher, self.settings), batch)
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
    fetcher = _Fetcher(settings)
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
