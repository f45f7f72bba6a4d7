"""Ingest labelled photos into the store and the registry, in three steps:

- :mod:`core.ingest.sources`: what a source (a label folder, a CSV manifest, ``default``)
  names, read without opening any photo;
- :mod:`core.ingest.fetching`: each photo read or downloaded, with limits, and checked;
- :mod:`core.ingest.registering`: the good photos stored once and registered.

A bad photo is skipped with its reason and never stops the run.
"""

from core.ingest.registering import IngestReport, ProgressCallback, ingest, photo_row
from core.ingest.sources import DEFAULT_SOURCE, Listing, Skipped, SourceItem, read_source

__all__ = [
    "DEFAULT_SOURCE",
    "IngestReport",
    "Listing",
    "ProgressCallback",
    "Skipped",
    "SourceItem",
    "ingest",
    "photo_row",
    "read_source",
]
