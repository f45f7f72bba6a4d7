"""Large JPEGs are decoded at reduced scale before the exact resize: orientation still
applies, the original's size and limits stand, and a 12 MP copy gets the original's label."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from core.app import App
from core.config import Settings
from core.errors import ImageTooLarge
from core.imaging import DECODE_MIN_SIDE, check_photo, decode_stored
from tests.model.conftest import TrainedSystem

TWELVE_MP = (4000, 3000)


def large_copy(path: Path, orientation: int | None = None) -> bytes:
    with Image.open(path) as photo:
        big = photo.convert("RGB").resize(TWELVE_MP, Image.Resampling.BICUBIC)
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    big.save(buffer, "JPEG", quality=90, exif=exif.tobytes())
    return buffer.getvalue()


def test_a_12_mp_jpeg_decodes_at_reduced_scale_with_its_orientation(
    settings: Settings, dataset_photos: dict[str, list[Path]]
) -> None:
    data = large_copy(dataset_photos["dandelion"][0], orientation=6)  # rotated 90 degrees
    photo = check_photo(data, settings)
    assert (photo.width, photo.height) == (3000, 4000)  # the original, upright
    assert photo.image.size == (750, 1000)  # decoded at 1/4, upright too
    assert min(photo.image.size) >= DECODE_MIN_SIDE
    assert decode_stored(data).size == photo.image.size  # training sees the same pixels
    assert decode_stored(data).tobytes() == photo.image.tobytes()

    small = dataset_photos["grass"][0].read_bytes()  # the shared photos are decoded whole
    with Image.open(io.BytesIO(small)) as original:
        assert check_photo(small, settings).image.size == original.size


def test_the_limits_apply_to_the_original(
    make_settings: Callable[..., Settings], dataset_photos: dict[str, list[Path]]
) -> None:
    data = large_copy(dataset_photos["dandelion"][0])
    with pytest.raises(ImageTooLarge, match="12 megapixels"):
        check_photo(data, make_settings(max_image_pixels=11_000_000))
    with pytest.raises(ImageTooLarge, match="MB"):
        check_photo(data, make_settings(max_upload_bytes=len(data) - 1))


@pytest.mark.slow
def test_a_12_mp_copy_gets_the_label_of_the_original(
    trained: TrainedSystem, dataset_photos: dict[str, list[Path]]
) -> None:
    originals = dataset_photos["dandelion"][20:25] + dataset_photos["grass"][20:25]
    with App(trained.settings, actor="test") as app:
        small = app.classify([path.read_bytes() for path in originals])
        large = app.classify([large_copy(path) for path in originals])
    assert [p.label for p in large] == [p.label for p in small]  # type: ignore[union-attr]
