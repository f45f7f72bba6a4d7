"""Photos made for the tests: odd but valid formats, and hostile or broken files."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png(side: int = 20000) -> bytes:
    """A real side x side 1-bit PNG; its pixels are all zero, so it compresses to ~50 KB."""
    row = b"\x00" + bytes((side + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", idat)
        + _chunk(b"IEND", b"")
    )


def odd_but_valid(photo: Path) -> dict[str, tuple[bytes, str]]:
    """The same photo in the modes and formats a camera or an editor may produce."""
    rgb = Image.open(photo).convert("RGB")
    gray16 = Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)  # mode I;16
    rgba = rgb.convert("RGBA")
    rgba.putalpha(200)
    frames = [rgb, rgb.rotate(5), rgb.rotate(10)]
    animated = io.BytesIO()
    frames[0].save(animated, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    return {
        "cmyk_jpeg": (encode(rgb.convert("CMYK"), "JPEG"), "cmyk.jpg"),
        "16bit_png": (encode(gray16, "PNG"), "gray16.png"),
        "palette_png": (encode(rgb.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"), "p.png"),
        "grayscale_jpeg": (encode(rgb.convert("L"), "JPEG"), "gray.jpg"),
        "alpha_png": (encode(rgba, "PNG"), "alpha.png"),
        "animated_gif": (animated.getvalue(), "anim.gif"),
        "webp": (encode(rgb, "WEBP"), "photo.webp"),
        "bmp": (encode(rgb, "BMP"), "photo.bmp"),
        "tiff": (encode(rgb, "TIFF"), "photo.tif"),
    }


def exif_rotated(photo: Path) -> bytes:
    """The photo's pixels turned a quarter left, with EXIF orientation 6 to turn them back."""
    rgb = Image.open(photo).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    return encode(rgb.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif, quality=95)
