"""Photo validation: every photo from any source passes here before it is stored or classified.

The checks run in order of cost: byte size, format sniffed from content, pixel count read from
the header (before any decoding, so a decompression bomb never expands), then a decode.

A JPEG far larger than any network input (a 12 MP phone photo) is decoded at a reduced scale
(1/2, 1/4 or 1/8, done by the JPEG decoder itself, several times faster than a full decode),
never below :data:`DECODE_MIN_SIDE` on its shorter side; the model's exact resize follows.
Storing, training and prediction all decode here, so the same bytes always give the same
pixels. The limits apply to the original photo.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.config import Settings
from core.errors import ImageTooLarge, InvalidImage, UnsupportedMediaType

# Formats we accept, with the extension we store them under.
EXTENSIONS = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "GIF": ".gif",
    "BMP": ".bmp",
    "TIFF": ".tif",
}
CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}

#: The shorter side a reduced-scale decode keeps at least: twice the largest input of every
#: backbone, Lite2's 260 px (``Preprocessing.min_decode_side``; a test checks each backbone
#: needs no more).
DECODE_MIN_SIDE = 520

ORIENTATION_TAG = 0x0112
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})  # the ones that swap width and height

#: What a folder is searched for; a file named on its own is tried whatever its name.
PHOTO_SUFFIXES = frozenset({*EXTENSIONS.values(), ".jpeg", ".tiff"})


def find_photos(paths: Iterable[Path]) -> list[Path]:
    """Files as given, folders searched recursively for photo files, sorted, each once."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(
                    child
                    for child in path.rglob("*")
                    if child.is_file() and child.suffix.lower() in PHOTO_SUFFIXES
                )
            )
        else:
            found.append(path)
    return list(dict.fromkeys(found))


def read_photo_file(path: Path) -> bytes:
    """A photo file's bytes; :class:`InvalidImage` (``unreadable``) when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidImage(
            f"Cannot read {path.name}: {exc.strerror or exc}", code="unreadable"
        ) from None


@dataclass(frozen=True)
class CheckedPhoto:
    """A photo that passed every check: its original bytes and its decoded RGB image."""

    data: bytes
    sha256: str
    #: RGB, EXIF orientation applied; a large JPEG at reduced scale (see the module's docstring).
    image: Image.Image
    image_format: str
    #: The original photo's size, EXIF orientation applied.
    width: int
    height: int

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.image_format]

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.image_format]


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB from any mode: alpha is composited on white, 16-bit is scaled, CMYK converted."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        high = array.max() if array.size else 0.0
        scale = 255.0 / high if high > 255 else 1.0
        image = Image.fromarray(np.clip(array * scale, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")


def check_photo(data: bytes, settings: Settings) -> CheckedPhoto:
    """Validate and decode ``data``; raise an :class:`InvalidImage` subclass saying why not."""
    if not data:
        raise InvalidImage("The file is empty (0 bytes).", code="empty")
    if len(data) > settings.max_upload_bytes:
        raise ImageTooLarge(
            f"The file is {len(data) / 1e6:.1f} MB, above the {settings.max_upload_bytes / 1e6:.1f} MB "
            "limit (setting max_upload_bytes)."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data), formats=list(EXTENSIONS))
    except (
        UnidentifiedImageError,
        Image.DecompressionBombWarning,
        Image.DecompressionBombError,
    ) as exc:
        if isinstance(exc, UnidentifiedImageError):
            raise UnsupportedMediaType(
                f"Not a supported image: accepted formats are {', '.join(sorted(EXTENSIONS))}."
            ) from None
        raise ImageTooLarge(f"The image has too many pixels: {exc}") from None
    except Exception as exc:  # Pillow raises many types on hostile headers
        raise InvalidImage(f"The image header is corrupt: {exc}", code="corrupt") from None

    with opened:
        width, height = opened.size
        if width * height > settings.max_image_pixels:
            raise ImageTooLarge(
                f"The image is {width}x{height} = {width * height / 1e6:.0f} megapixels, above the "
                f"{settings.max_image_pixels / 1e6:.0f} MP limit (setting max_image_pixels)."
            )
        if min(width, height) < settings.min_image_side:
            raise InvalidImage(
                f"The image is {width}x{height}, smaller than {settings.min_image_side} px on a side "
                "(setting min_image_side).",
                code="too_small",
            )
        image_format = str(opened.format)
        try:
            # PNG keeps its EXIF after the pixels: reading it may decode a damaged stream.
            if opened.getexif().get(ORIENTATION_TAG) in _TRANSPOSING_ORIENTATIONS:
                width, height = height, width
            rgb = _decode(opened)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise InvalidImage(
                f"The image is corrupt or truncated: {exc}", code="corrupt"
            ) from None
    return CheckedPhoto(
        data=data,
        sha256=sha256_of(data),
        image=rgb,
        image_format=image_format,
        width=width,
        height=height,
    )


def _decode(opened: Image.Image) -> Image.Image:
    """The first frame as RGB, EXIF orientation applied; a large JPEG at reduced scale."""
    opened.seek(0)  # the first frame of an animation
    # Only JPEG decoders scale while decoding; draft picks the largest reduction (1/2, 1/4,
    # 1/8) that keeps both sides at least DECODE_MIN_SIDE, and none for smaller photos.
    opened.draft(None, (DECODE_MIN_SIDE, DECODE_MIN_SIDE))
    opened.load()
    return _to_rgb(ImageOps.exif_transpose(opened))


def decode_stored(data: bytes) -> Image.Image:
    """The RGB image of a stored photo, decoded exactly as :func:`check_photo` decodes it.

    For bytes that already passed :func:`check_photo` when they were stored, so training and
    prediction see the same pixels without the limits being applied again.
    """
    try:
        with Image.open(io.BytesIO(data), formats=list(EXTENSIONS)) as opened:
            return _decode(opened)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InvalidImage(f"The stored photo is corrupt: {exc}", code="corrupt") from None
