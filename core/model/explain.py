"""Heatmaps: where in a photo the model found its label.

For a linear head on a CNN's globally pooled features, the head's weights applied to each
cell of the last feature map give the class activation map (Zhou et al., 2016): the photo's
logit is exactly the mean of the map plus the bias, so the map shows what made the answer.
For a ViT the same weights go on the patch tokens. The map comes from the same backbone
pass as the prediction (:meth:`core.model.backbone.Backbone.embed_with_maps`).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from core.model.preprocessing import Preprocessing

#: The longest side of a heatmap picture: enough to see, small enough to send.
MAX_SIDE = 512
#: The colour scale from no evidence to the most, as (position, RGB).
_SCALE = (
    (0.0, (48, 18, 59)),
    (0.25, (40, 130, 230)),
    (0.5, (30, 210, 140)),
    (0.75, (250, 200, 40)),
    (1.0, (220, 40, 20)),
)
#: How much the colour covers the photo where the evidence is strongest (none where there
#: is none, so the photo stays readable).
MAX_OPACITY = 0.65


def evidence(cell_logits: np.ndarray) -> np.ndarray:
    """A label's logit map ``(H, W)`` to evidence in [0, 1]: positive cells only, scaled
    by the strongest (all zero when no cell speaks for the label)."""
    positive = np.maximum(np.asarray(cell_logits, np.float64), 0.0)
    peak = positive.max()
    return positive / peak if peak > 0 else positive


def colours(heat: np.ndarray) -> np.ndarray:
    """Evidence in [0, 1] ``(H, W)`` to RGB ``(H, W, 3)`` uint8 on :data:`_SCALE`."""
    positions = [position for position, _ in _SCALE]
    channels = [
        np.interp(heat, positions, [rgb[channel] for _, rgb in _SCALE]) for channel in range(3)
    ]
    return np.stack(channels, axis=-1).astype(np.uint8)


def overlay(
    image: Image.Image, cell_logits: np.ndarray, preprocessing: Preprocessing
) -> Image.Image:
    """The part of ``image`` the network saw, with the evidence for a label laid over it."""
    seen = image.convert("RGB").crop(preprocessing.seen_box(image.width, image.height))
    seen.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BICUBIC)
    heat_cells = Image.fromarray(evidence(cell_logits).astype(np.float32), mode="F")
    heat = np.clip(np.asarray(heat_cells.resize(seen.size, Image.Resampling.BILINEAR)), 0, 1)
    photo = np.asarray(seen, np.float64)
    opacity = (MAX_OPACITY * heat)[..., np.newaxis]
    blended = photo * (1 - opacity) + colours(heat).astype(np.float64) * opacity
    return Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8))


def heatmap_png(image: Image.Image, cell_logits: np.ndarray, preprocessing: Preprocessing) -> bytes:
    buffer = io.BytesIO()
    overlay(image, cell_logits, preprocessing).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
