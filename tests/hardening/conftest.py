"""Fixtures for the hardening suite: apps and real servers on copies of the session's trained
home (the edge suite's helpers), and photos no stored one shares bytes with."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from tests.edge.conftest import make_app  # noqa: F401  (the edge suite's fixture, shared)
from tests.edge.photos import encode


@pytest.fixture
def new_photo(dataset_dir: Path) -> Callable[[int], bytes]:
    """``new_photo(n)``: PNG bytes of a shared photo turned a quarter, unlike any stored one."""
    photos = sorted((dataset_dir / "grass").glob("*.jpg"))

    def make(index: int) -> bytes:
        return encode(Image.open(photos[index]).rotate(90), "PNG")

    return make


def upload(data: bytes, name: str = "photo.png", **form: str) -> dict[str, object]:
    """A multipart form with ``data`` as the field ``file``."""
    return {"file": (io.BytesIO(data), name), **form}
