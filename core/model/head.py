"""The trained part of a model: one linear layer on a frozen backbone's embedding.

Two labels get one logit (its sigmoid is the probability of ``labels[1]``) trained with
binary cross-entropy; more labels get one logit each, trained with softmax cross-entropy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


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

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], n_labels: int) -> LinearHead:
        weight = state["linear.weight"]
        head = cls(int(weight.shape[1]), n_labels)
        head.load_state_dict(state, strict=True)
        return head.eval()


@dataclass(frozen=True)
class EpochStats:
    epoch: int  # 1-based
    loss: float  # mean training loss over the epoch
    accuracy: float  # training accuracy over the epoch, as the head stood at each batch


def fit_head(
    embeddings: np.ndarray,
    targets: np.ndarray,
    n_labels: int,
    *,
    learning_rate: float,
    epochs: int,
    batch_size: int,
    seed: int,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> tuple[LinearHead, list[EpochStats]]:
    """Train a :class:`LinearHead` with Adam on raw ``embeddings`` (N, dim) and label indices.

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
    binary = n_labels == 2
    loss_fn: nn.Module = nn.BCEWithLogitsLoss() if binary else nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)

    history = []
    head.train()
    for epoch in range(1, epochs + 1):
        total_loss, correct = 0.0, 0
        for batch in torch.randperm(len(x), generator=generator).split(batch_size):
            logits = head(x[batch])
            if binary:
                loss = loss_fn(logits[:, 0], y[batch].float())
                predicted = (logits[:, 0] > 0).long()
            else:
                loss = loss_fn(logits, y[batch])
                predicted = logits.argmax(dim=1)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total_loss += float(loss.detach()) * len(batch)
            correct += int((predicted == y[batch]).sum())
        stats = EpochStats(epoch, total_loss / len(x), correct / len(x))
        history.append(stats)
        if on_epoch is not None:
            on_epoch(stats)
    return head.eval(), history
