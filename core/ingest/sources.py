"""Reading a source: what photos it names, with their labels.

A source is a folder with one sub-folder per label, a CSV manifest of ``url,label`` rows
(http(s) URLs or local paths), or ``default``, the specification's remote dataset. Listing a
source reads no photo: entries that cannot be ingested whatever their bytes (an unknown label,
a malformed manifest row) are reported as skipped here.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from core.config import Settings
from core.errors import SourceError
from core.imaging import PHOTO_SUFFIXES

DEFAULT_SOURCE = "default"
# The specification's dataset: 200 photos per label in the public repo btphan95/greenr-airflow.
DEFAULT_BASE_URL = "https://raw.githubusercontent.com/btphan95/greenr-airflow/master/data"
DEFAULT_LABELS = ("dandelion", "grass")
DEFAULT_PER_LABEL = 200


class Skipped(NamedTuple):
    """An entry not ingested: where it is, a stable reason code and why, for people."""

    source: str
    reason: str  # a short stable code, e.g. "unknown_label", "corrupt", "unreachable"
    message: str


@dataclass(frozen=True)
class SourceItem:
    """One photo to ingest: where it is (path or URL, recorded as ``url_source``) and its label."""

    location: str
    label: str


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
