"""The contract suite's homes and photos: the edge suite's trained home (version 1 champion,
version 2 candidate, all the shared photos ingested), copied for each adapter."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageOps


def variant(photo: Path, step: int) -> bytes:
    """A new photo made from a shared one: mirrored, cropped by ``step`` pixels, re-encoded.
    Its bytes are new (no exact duplicate) and the same on every call (both adapters get
    identical photos)."""
    with Image.open(photo) as image:
        changed = ImageOps.mirror(image.convert("RGB"))
    width, height = changed.size
    changed = changed.crop((step, step, width - step, height - step))
    out = io.BytesIO()
    changed.save(out, format="JPEG", quality=90)
    return out.getvalue()


def truncated(photo: Path) -> bytes:
    """A shared photo cut to a third: a corrupt JPEG."""
    data = photo.read_bytes()
    return data[: len(data) // 3]
