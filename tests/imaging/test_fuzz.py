"""Hypothesis drives core.imaging with malformed and truncated bytes of every supported
format: the only exceptions are the project's own, and nothing is decoded beyond the pixel
limit (every decode is watched through Pillow's real ``ImageFile.load``). Large JPEGs, whole
or damaged, take the reduced-scale path: decoded at least halved, in their EXIF orientation."""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from core.config import Settings, load_settings
from core.errors import ImageTooLarge, InvalidImage
from core.imaging import DECODE_MIN_SIDE, EXTENSIONS, ORIENTATION_TAG, check_photo, decode_stored

# Pillow warns about the damage it meets (corrupt EXIF, oversized tags): expected here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")

LIMITS = load_settings({}, overrides={"home": "/nonexistent", "max_image_pixels": 250_000})
LARGE_LIMITS = LIMITS.model_copy(update={"max_image_pixels": 6_000_000})
MODES = {
    "JPEG": ["RGB", "L", "CMYK"],
    "PNG": ["RGB", "RGBA", "L", "P", "I;16", "LA"],
    "WEBP": ["RGB", "RGBA"],
    "GIF": ["P", "L"],
    "BMP": ["RGB", "L", "P"],
    "TIFF": ["RGB", "RGBA", "L", "CMYK", "I;16"],
}
FUZZ = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def decoded_sizes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, int]]]:
    """The size of every image Pillow decodes, recorded as the real load runs."""
    sizes: list[tuple[int, int]] = []
    real_load = ImageFile.ImageFile.load

    def watched_load(image: ImageFile.ImageFile) -> object:
        sizes.append(image.size)
        return real_load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", watched_load)
    yield sizes


@st.composite
def images(draw: st.DrawFn) -> bytes:
    image_format = draw(st.sampled_from(sorted(EXTENSIONS)))
    mode = draw(st.sampled_from(MODES[image_format]))
    width, height = draw(st.integers(1, 300)), draw(st.integers(1, 300))
    seed = draw(st.integers(0, 255))
    image = Image.new("RGB", (width, height), (seed, 255 - seed, seed // 2)).convert(mode)
    if mode == "I;16":
        image = Image.new("I;16", (width, height), seed * 200)
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


@st.composite
def large_jpegs(draw: st.DrawFn) -> bytes:
    """Photos large enough to decode at reduced scale (1/2 to 1/4), in any EXIF orientation."""
    width, height = draw(st.integers(2 * DECODE_MIN_SIDE, 2400)), draw(st.integers(1040, 2400))
    texture = random.Random(draw(st.integers(0, 2**16))).randbytes(64 * 48 * 3)
    noise = Image.frombytes("RGB", (64, 48), texture)
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = draw(st.integers(1, 8))
    buffer = io.BytesIO()
    noise.resize((width, height)).save(buffer, "JPEG", quality=draw(st.integers(30, 95)), exif=exif)
    return buffer.getvalue()


@st.composite
def damaged(draw: st.DrawFn, source: st.SearchStrategy[bytes]) -> bytes:
    data = bytearray(draw(source))
    for _ in range(draw(st.integers(0, 8))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    cut = draw(st.integers(1, len(data)))
    junk = draw(st.binary(max_size=64))
    return bytes(data[:cut]) + junk


def assert_within_limits(sizes: list[tuple[int, int]], limits: Settings) -> None:
    assert all(w * h <= limits.max_image_pixels for w, h in sizes), sizes


@FUZZ
@given(data=damaged(images()))
def test_damaged_bytes_raise_only_our_errors(data: bytes, decoded_sizes: list) -> None:
    try:
        photo = check_photo(data, LIMITS)
    except InvalidImage:
        pass
    else:
        assert photo.image.mode == "RGB"
        assert photo.width * photo.height <= LIMITS.max_image_pixels
    assert_within_limits(decoded_sizes, LIMITS)


@FUZZ
@given(data=images())
def test_valid_images_of_every_format_decode_to_rgb(data: bytes, decoded_sizes: list) -> None:
    try:
        photo = check_photo(data, LIMITS)
    except InvalidImage as exc:
        assert exc.code == "too_small"  # 1-15 px sides are below min_image_side
        return
    assert photo.image.mode == "RGB"
    assert decode_stored(data).size == photo.image.size  # the stored path sees the same pixels
    assert_within_limits(decoded_sizes, LIMITS)


LARGE_FUZZ = settings(FUZZ, max_examples=40)  # each photo is megapixels: fewer of them


@LARGE_FUZZ
@given(data=large_jpegs())
def test_large_jpegs_decode_at_reduced_scale_in_their_orientation(
    data: bytes, decoded_sizes: list
) -> None:
    earlier = len(decoded_sizes)  # the fixture lives across the examples
    photo = check_photo(data, LARGE_LIMITS)
    with Image.open(io.BytesIO(data)) as opened:
        full_width, full_height = opened.size
        turned = opened.getexif()[ORIENTATION_TAG] >= 5  # 5-8 swap width and height
    assert (photo.width, photo.height) == ((full_height, full_width) if turned else opened.size)
    (decoded,) = set(decoded_sizes[earlier:])  # one decode (load runs again as a no-op)
    # At least halved (the decoder rounds a scaled side up).
    assert decoded[0] <= (full_width + 1) // 2 and decoded[1] <= (full_height + 1) // 2
    assert min(decoded) >= DECODE_MIN_SIDE
    assert photo.image.size == (decoded[::-1] if turned else decoded)
    assert decode_stored(data).size == photo.image.size


@LARGE_FUZZ
@given(data=damaged(large_jpegs()))
def test_damaged_large_jpegs_raise_only_our_errors(data: bytes, decoded_sizes: list) -> None:
    try:
        photo = check_photo(data, LARGE_LIMITS)
    except InvalidImage:
        return
    assert photo.image.mode == "RGB"
    assert_within_limits(decoded_sizes, LARGE_LIMITS)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` (a decompression bomb's header)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@FUZZ
@given(width=st.integers(501, 2**31 - 1), height=st.integers(501, 2**31 - 1))
def test_pixel_bombs_are_refused_before_any_decode(
    width: int, height: int, decoded_sizes: list
) -> None:
    with pytest.raises(ImageTooLarge):
        check_photo(png_claiming(width, height), LIMITS)
    assert decoded_sizes == []
