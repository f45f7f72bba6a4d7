"""A backbone's torch network with its last feature map as a second output (torch only).

The exported file and the torch runtime both run this: one pass gives the pooled embedding
(the first output, as before) and the map a heatmap is made of (:mod:`core.model.explain`):

- a CNN: the feature map before global average pooling, ``(N, C, H, W)``; the embedding is
  its mean over the grid, so a linear head applied to each cell is an exact class
  activation map;
- a ViT: the patch tokens after the final norm, laid on their grid as ``(N, C, H, W)``.
"""

from __future__ import annotations

import math
from typing import Any


def with_feature_map(network: Any) -> Any:
    """``network`` (a timm model built with ``num_classes=0``) answering
    ``(embedding, feature_map)``."""
    import torch
    from torch import nn

    class WithFeatureMap(nn.Module):
        def __init__(self, inner: Any) -> None:  # a timm model: forward_features/forward_head
            super().__init__()
            self.inner = inner

        def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            features = self.inner.forward_features(pixels)
            embedding = self.inner.forward_head(features, pre_logits=True)
            if features.ndim == 3:  # a ViT's tokens: drop CLS (and registers), keep the grid
                patches = features[:, self.inner.num_prefix_tokens :]
                side = math.isqrt(patches.shape[1])
                features = patches.transpose(1, 2).reshape(
                    patches.shape[0], patches.shape[2], side, side
                )
            return embedding, features

    return WithFeatureMap(network).eval().requires_grad_(False)
