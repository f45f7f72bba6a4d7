"""The backbone interface: a frozen pretrained network that turns photos into embeddings.

Each backbone has a module of its own in ``core.model.backbones``; nothing here builds a
network at import time.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from core.model.preprocessing import Preprocessing


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
    def preprocess(self, image: Image.Image) -> np.ndarray:
        """One RGB image to a CHW float32 array, identical in training and prediction."""

    @abstractmethod
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """An NCHW batch to N embeddings (the network's forward pass, no grad)."""

    def embed(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        """Embeddings of ``images`` as float32 ``(len(images), dim)``, computed in batches."""
        out = np.empty((len(images), self.dim), dtype=np.float32)
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            batch = torch.from_numpy(np.stack([self.preprocess(image) for image in chunk]))
            with self._lock, torch.inference_mode():
                out[start : start + len(chunk)] = self.forward(batch).float().numpy()
                self.images_embedded += len(chunk)
        return out


class TimmBackbone(Backbone):
    """A frozen timm network with its preprocessing and the function that reads its embedding."""

    def __init__(
        self,
        backbone_id: str,
        network: nn.Module,
        dim: int,
        preprocessing: Preprocessing,
        features: Callable[[nn.Module, torch.Tensor], torch.Tensor],
        weights: str,
    ) -> None:
        super().__init__()
        self.id = backbone_id
        self.dim = dim
        self.weights = weights  # where the pretrained weights came from, for logs and status
        self._network = network.eval().requires_grad_(False)
        self._preprocessing = preprocessing
        self._features = features

    @property
    def preprocessing(self) -> dict[str, Any]:
        return self._preprocessing.as_dict()

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return self._preprocessing(image)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self._features(self._network, batch)
