"""The trained part of a model: one linear layer on a frozen backbone's embedding.

Two labels get one logit (its sigmoid is the probability of ``labels[1]``) trained with
binary cross-entropy; more labels get one logit each, trained with softmax cross-entropy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from core.model.metrics import EpochStats


class LinearHead(nn.Module):
    """Logits from embeddings; :meth:`probabilities` gives one column per label."""

    def __init__(self, dim: int, n_labels: int) -> None:
        super().__init__()
        if n_labels < 2:
            raise ValueError(f"a classifier needs at least two labels, got {n_labels}")
        self.n_labels = n_labels
        self.linear = nn.Linear(dim, 1 if n_labels == 2 else n_labels)

    @property
    def dim(self) -> int:
        return self.linear.in_features

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.linear(embeddings)
        return logits

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """float64 ``(N, n_labels)`` probabilities; each row sums to 1."""
        with torch.inference_mode():
            logits = self(torch.as_tensor(np.asarray(embeddings, dtype=np.float32)))
            if self.n_labels == 2:
                positive = torch.sigmoid(logits[:, 0]).double()
                return torch.stack([1 - positive, positive], dim=1).numpy()
            return torch.softmax(logits.double(), dim=1).numpy()

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean training loss of ``logits`` against label indices ``targets``."""
        if self.n_labels == 2:
            return functional.binary_cross_entropy_with_logits(logits[:, 0], targets.float())
        return functional.cross_entropy(logits, targets)

    def scores(self, embeddings: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
        """(loss, accuracy) on labelled embeddings; the accuracy is that of :meth:`probabilities`,
        as the validation metrics compute it."""
        with torch.inference_mode():
            logits = self(torch.as_tensor(np.asarray(embeddings, dtype=np.float32)))
            loss = float(self.loss(logits, torch.as_tensor(np.asarray(targets, dtype=np.int64))))
        predicted = self.probabilities(embeddings).argmax(axis=1)
        return loss, float((predicted == np.asarray(targets)).mean())

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], n_labels: int) -> LinearHead:
        weight = state["linear.weight"]
        head = cls(int(weight.shape[1]), n_labels)
        head.load_state_dict(state, strict=True)
        return head.eval()


def fit_head(
    embeddings: np.ndarray,
    targets: np.ndarray,
    n_labels: int,
    *,
    validation: tuple[np.ndarray, np.ndarray],
    learning_rate: float,
    epochs: int,
    batch_size: int,
    seed: int,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> tuple[LinearHead, list[EpochStats]]:
    """Train a :class:`LinearHead` with Adam on raw ``embeddings`` (N, dim) and label indices.

    After each epoch the head is scored on the held-out ``validation`` (embeddings, targets).
    Deterministic: zero initial weights and a seeded shuffle. (Standardising the embeddings
    first was tried: no better held-out accuracy on the shared photos, so the head stays a
    plain linear layer on the backbone's output.)
    """
    x = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
    y = torch.as_tensor(np.asarray(targets, dtype=np.int64))

    head = LinearHead(x.shape[1], n_labels)
    nn.init.zeros_(head.linear.weight)
    nn.init.zeros_(head.linear.bias)
    optimiser = torch.optim.Adam(head.parameters(), lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)

    history = []
    head.train()
    for epoch in range(1, epochs + 1):
        total_loss, correct = 0.0, 0
        for batch in torch.randperm(len(x), generator=generator).split(batch_size):
            logits = head(x[batch])
            loss = head.loss(logits, y[batch])
            predicted = (logits[:, 0] > 0).long() if n_labels == 2 else logits.argmax(dim=1)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total_loss += float(loss.detach()) * len(batch)
            correct += int((predicted == y[batch]).sum())
        val_loss, val_accuracy = head.scores(*validation)
        stats = EpochStats(epoch, total_loss / len(x), correct / len(x), val_loss, val_accuracy)
        history.append(stats)
        if on_epoch is not None:
            on_epoch(stats)
    return head.eval(), history
