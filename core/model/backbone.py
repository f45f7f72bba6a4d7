"""The backbone interface: a frozen pretrained network that turns photos into embeddings.

Implementations live in ``core.model.backbones``; nothing here imports torch weights at
import time.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image


class Backbone(ABC):
    """A frozen feature extractor. Runs in eval mode under ``torch.inference_mode``."""

    #: Stable id recorded in every artifact and embedding row, e.g. ``"dinov2_vits14"``.
    id: str
    #: Embedding size.
    dim: int

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: How many images went through the network (the tests count cache misses with it).
        self.images_embedded = 0

    @property
    @abstractmethod
    def preprocessing(self) -> dict[str, Any]:
        """A JSON-able description of the preprocessing, recorded with each model."""

    @abstractmethod
    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One RGB image to a CHW float tensor, identical in training and prediction."""

    @abstractmethod
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """An NCHW batch to N embeddings (the network's forward pass, no grad)."""

    def embed(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        """Embeddings of ``images`` as float32 ``(len(images), dim)``, computed in batches."""
        out = np.empty((len(images), self.dim), dtype=np.float32)
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            batch = torch.stack([self.preprocess(image) for image in chunk])
            with self._lock, torch.inference_mode():
                out[start : start + len(chunk)] = self.forward(batch).float().numpy()
                self.images_embedded += len(chunk)
        return out
