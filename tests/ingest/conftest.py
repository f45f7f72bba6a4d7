"""Fixtures for the ingest tests: bad photos made on the fly and a real local HTTP server."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

PIXEL_LIMIT = 1_000_000  # far above the shared photos (~50 kP), below the big test image


@pytest.fixture
def bad_source(tmp_path: Path, dataset_photos: dict[str, list[Path]]) -> Path:
    """A label folder source: two good photos and one bad file of each kind."""
    root = tmp_path / "source"
    for label in ("dandelion", "grass", "roses"):
        (root / label).mkdir(parents=True)
    shutil.copy(dataset_photos["dandelion"][0], root / "dandelion" / "good.jpg")
    shutil.copy(dataset_photos["grass"][0], root / "grass" / "good.jpg")

    good = dataset_photos["grass"][1].read_bytes()
    (root / "grass" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "grass" / "notes.jpg").write_text("these are not pixels\n")
    (root / "grass" / "empty.jpg").write_bytes(b"")
    Image.new("RGB", (1200, 1000), (20, 160, 40)).save(root / "grass" / "huge.png")
    shutil.copy(dataset_photos["grass"][2], root / "roses" / "rose.jpg")
    return root


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_photos(tmp_path: Path, dataset_photos: dict[str, list[Path]]) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving two shared photos; yields its base URL."""
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(dataset_photos["dandelion"][5], served / "dandelion.jpg")
    shutil.copy(dataset_photos["grass"][5], served / "grass.jpg")

    def handler(*args: object) -> _QuietHandler:
        return _QuietHandler(*args, directory=str(served))  # type: ignore[arg-type]

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
