"""The trained part of a model: one linear layer on a frozen backbone's embedding, in numpy.

Two labels get one logit (its sigmoid is the probability of ``labels[1]``); more labels get
one logit each (softmax). Training it needs torch (:mod:`core.model.fitting`); using it does
not, so a process that only predicts never imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

WEIGHT, BIAS = "linear.weight", "linear.bias"  # the names in the artifact's state_dict


class LinearHead:
    """Logits from embeddings; :meth:`probabilities` gives one column per label."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, n_labels: int) -> None:
        if n_labels < 2:
            raise ValueError(f"a classifier needs at least two labels, got {n_labels}")
        outputs = 1 if n_labels == 2 else n_labels
        weight = np.asarray(weight, dtype=np.float32)
        bias = np.asarray(bias, dtype=np.float32)
        if weight.ndim != 2 or weight.shape[0] != outputs or bias.shape != (outputs,):
            raise ValueError(
                f"a head for {n_labels} labels needs a ({outputs}, dim) weight and ({outputs},) "
                f"bias, got {weight.shape} and {bias.shape}"
            )
        self.weight, self.bias, self.n_labels = weight, bias, n_labels

    @property
    def dim(self) -> int:
        return int(self.weight.shape[1])

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        logits: np.ndarray = np.asarray(embeddings, dtype=np.float32) @ self.weight.T + self.bias
        return logits

    def probabilities(self, embeddings: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        """float64 ``(N, n_labels)`` probabilities; each row sums to 1. A ``temperature``
        (:mod:`core.model.calibration`) divides the logits first."""
        logits = self.logits(embeddings).astype(np.float64) / temperature
        return self.probabilities_of(logits, self.n_labels)

    @staticmethod
    def probabilities_of(logits: np.ndarray, n_labels: int) -> np.ndarray:
        """A head's logits ``(N, 1)`` (two labels) or ``(N, n_labels)`` to probabilities."""
        logits = np.asarray(logits, dtype=np.float64)
        if n_labels == 2:
            positive = 1.0 / (1.0 + np.exp(-logits[:, 0]))
            return np.stack([1.0 - positive, positive], axis=1)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities: np.ndarray = shifted / shifted.sum(axis=1, keepdims=True)
        return probabilities

    def class_maps(self, features: np.ndarray) -> np.ndarray:
        """The head applied to each cell of feature maps ``(N, dim, H, W)``: per-label logit
        maps ``(N, n_labels, H, W)`` (for two labels, ``[-z, z]``: where each label gains).
        For a CNN whose embedding is the maps' mean, this is the class activation map, and
        its mean over the cells is the photo's logit (less the bias)."""
        maps = np.einsum("od,ndhw->nohw", self.weight, np.asarray(features, np.float32))
        if self.n_labels == 2:
            maps = np.concatenate([-maps, maps], axis=1)
        return maps

    def state_dict(self) -> dict[str, np.ndarray]:
        return {WEIGHT: self.weight, BIAS: self.bias}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, np.ndarray], n_labels: int) -> LinearHead:
        unexpected = set(state) - {WEIGHT, BIAS}
        if unexpected:
            raise ValueError(
                f"unexpected tensors in a linear head: {', '.join(sorted(unexpected))}"
            )
        return cls(state[WEIGHT], state[BIAS], n_labels)
