"""How a photo becomes a network's input: recorded with every model, free of torch.

Training, prediction, the exported runtimes and users of an exported model all run the same
steps, so one description (:class:`Preprocessing`) drives them all.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)

_INTERPOLATIONS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


@dataclass(frozen=True)
class Preprocessing:
    """How a photo becomes the network's input.

    ``resize`` is ``"squash"`` (the whole photo stretched to size x size) or ``"crop"`` (the
    shorter side scaled to size / crop_fraction, then the centre size x size cut out).
    """

    size: int = 224
    resize: str = "squash"
    crop_fraction: float = 1.0
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.resize not in ("squash", "crop") or self.interpolation not in _INTERPOLATIONS:
            raise ValueError(f"unsupported preprocessing {self}")

    def as_dict(self) -> dict[str, Any]:
        # Lists, not tuples: the same value before and after a JSON round trip.
        return {name: list(v) if isinstance(v, tuple) else v for name, v in asdict(self).items()}

    @property
    def min_decode_side(self) -> int:
        """The shorter side a photo needs before the resize for that resize to stay exact: twice
        the side it is scaled to, so every output pixel still averages several source pixels."""
        return math.ceil(2 * self.size / self.crop_fraction)

    def resized(self, image: Image.Image) -> np.ndarray:
        """The resize step: one image to ``(size, size, 3)`` uint8 pixels."""
        resample = _INTERPOLATIONS[self.interpolation]
        image = image.convert("RGB")
        if self.resize == "squash":
            image = image.resize((self.size, self.size), resample)
        else:
            scale = self.size / self.crop_fraction / min(image.size)
            width = max(self.size, round(image.width * scale))
            height = max(self.size, round(image.height * scale))
            image = image.resize((width, height), resample)
            left, top = (width - self.size) // 2, (height - self.size) // 2
            image = image.crop((left, top, left + self.size, top + self.size))
        return np.asarray(image, dtype=np.uint8)

    def seen_box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The part of a ``width`` x ``height`` photo the network sees, as a PIL box: all of
        it when squashed, the centre square (of side shorter side * crop_fraction) when
        cropped. A heatmap covers this box."""
        if self.resize == "squash":
            return (0, 0, width, height)
        side = min(width, height) * self.crop_fraction
        left, top = (width - side) / 2, (height - side) / 2
        return (round(left), round(top), round(left + side), round(top + side))

    def normalised(self, pixels: np.ndarray) -> np.ndarray:
        """The normalisation step: ``(..., size, size, 3)`` uint8 to ``(..., 3, size, size)``
        float32, the network's input."""
        # A table of the 256 values per channel, computed with the same float32 steps as
        # (pixels / 255 - mean) / std: the same numbers, several times faster.
        table = self._table()
        channels = [table[channel][pixels[..., channel]] for channel in range(3)]
        return np.stack(channels, axis=-3)

    def _table(self) -> np.ndarray:
        levels = np.arange(256, dtype=np.float32) / np.float32(255.0)
        mean = np.asarray(self.mean, np.float32)[:, np.newaxis]
        std = np.asarray(self.std, np.float32)[:, np.newaxis]
        table: np.ndarray = (levels[np.newaxis, :] - mean) / std
        return table

    def __call__(self, image: Image.Image) -> np.ndarray:
        """One RGB image to a CHW float32 array."""
        return self.normalised(self.resized(image))
