"""The backbone: a frozen pretrained network that turns photos into embeddings, running on
one inference runtime (:mod:`core.model.runtimes`). Free of torch.

Each backbone has a module of its own in ``core.model.backbones``; nothing here builds a
network at import time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from core.model.preprocessing import Preprocessing
from core.model.runtimes import Engine, kind

T = TypeVar("T")


class Backbone:
    """A frozen feature extractor: preprocessing, then one runtime's engine.

    Embedding runs as a pipeline: the next batch is decoded and preprocessed on a thread while
    the engine runs the current one (decoding and resizing release the GIL).
    """

    def __init__(
        self,
        backbone_id: str,
        dim: int,
        preprocessing: Preprocessing,
        engine: Engine,
        *,
        runtime: str,
        precision: str,
        weights: str,
        weights_sha256: str,
        accepted_kinds: frozenset[str],
        reason: str,
    ) -> None:
        #: Stable id recorded in every artifact and embedding row, e.g. ``"dinov2_vits14"``.
        self.id = backbone_id
        #: Embedding size.
        self.dim = dim
        self.runtime = runtime
        self.precision = precision
        self.weights = weights  # where the network came from, for logs and status
        self.weights_sha256 = weights_sha256
        #: The embedding kinds (``runtime/precision``) that keep parity with this one's
        #: reference: cached vectors of other kinds are computed again.
        self.accepted_kinds = accepted_kinds
        self.reason = reason  # why this runtime and precision, for status
        self._preprocessing = preprocessing
        self._engine = engine
        self._lock = threading.Lock()
        #: How many images went through the network (the tests count cache misses with it).
        self.images_embedded = 0

    @property
    def kind(self) -> str:
        """How this backbone's embeddings are computed, e.g. ``"openvino/bf16"``."""
        return kind(self.runtime, self.precision)

    @property
    def preprocessing(self) -> dict[str, Any]:
        """A JSON-able description of the preprocessing, recorded with each model."""
        return self._preprocessing.as_dict()

    @property
    def preprocessing_steps(self) -> Preprocessing:
        """The preprocessing itself (what part of a photo the network sees, for heatmaps)."""
        return self._preprocessing

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """One RGB image to a CHW float32 array, identical in training and prediction."""
        return self._preprocessing(image)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The network alone on a preprocessed NCHW float32 batch."""
        with self._lock:  # one batch at a time: each runtime already uses every core
            out = np.asarray(self._engine.run(batch), dtype=np.float32)
            self.images_embedded += len(batch)
        return out

    def embed_with_maps(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        """The embeddings of ``images`` and, from the same pass, their last feature maps
        ``(N, C, H, W)`` (what a heatmap is made of)."""
        batch = self._preprocessing.normalised(
            np.stack([self._preprocessing.resized(image) for image in images])
        )
        with self._lock:
            embedding, features = self._engine.run_with_features(batch)
            self.images_embedded += len(batch)
        return np.asarray(embedding, np.float32), np.asarray(features, np.float32)

    def embed_batches(
        self,
        items: Sequence[T],
        batch_size: int,
        load: Callable[[T], Image.Image] | None = None,
    ) -> Iterator[np.ndarray]:
        """The embeddings of ``items`` batch by batch; ``load`` turns an item into its image
        (e.g. fetches and decodes a stored photo) on the preprocessing thread."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")

        def prepare(chunk: Sequence[T]) -> np.ndarray:
            images = [load(item) if load else item for item in chunk]
            resized = np.stack([self._preprocessing.resized(image) for image in images])  # type: ignore[arg-type]
            return self._preprocessing.normalised(resized)  # the whole batch at once

        chunks = [items[start : start + batch_size] for start in range(0, len(items), batch_size)]
        if len(chunks) <= 1:  # nothing to overlap with
            yield from (self.run(prepare(chunk)) for chunk in chunks)
            return
        with ThreadPoolExecutor(1, thread_name_prefix="preprocess") as pool:
            pending = pool.submit(prepare, chunks[0])
            for index in range(len(chunks)):
                batch = pending.result()
                if index + 1 < len(chunks):
                    pending = pool.submit(prepare, chunks[index + 1])
                yield self.run(batch)

    def embed(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        """Embeddings of ``images`` as float32 ``(len(images), dim)``, computed in batches."""
        if not images:
            return np.empty((0, self.dim), dtype=np.float32)
        return np.concatenate(list(self.embed_batches(images, batch_size)))
