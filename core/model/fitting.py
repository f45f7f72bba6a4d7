"""Training the linear head: Adam, BCE for two labels (cross-entropy for more), zero initial
weights and a seeded shuffle. Two trainers carry out that same training:

- ``numpy``: the gradients and Adam written out, for processes without torch (the desktop
  bundle);
- ``torch``: torch's own losses and Adam, the reference.

Both take each epoch's batch order from one numpy generator, so they see the same batches in
the same order; a test holds them to the same weights and the same validation accuracy. The
trained weights leave as a numpy :class:`~core.model.head.LinearHead` either way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol, cast

import numpy as np

from core.errors import ConfigError
from core.model.head import LinearHead
from core.model.metrics import EpochStats
from core.model.runtimes import installed

if TYPE_CHECKING:
    import torch

NUMPY, TORCH = "numpy", "torch"
TRAINERS = (NUMPY, TORCH)
#: torch.optim.Adam's defaults, which both trainers use.
BETAS = (0.9, 0.999)
EPS = 1e-8


def default_trainer() -> str:
    """torch's trainer where torch is installed (the reference), else numpy's."""
    return TORCH if installed("torch") else NUMPY


def batches(count: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """One epoch's batches: a permutation of ``range(count)`` from ``rng``, cut in order."""
    order = rng.permutation(count)
    for start in range(0, count, batch_size):
        yield order[start : start + batch_size]


def outputs_for(n_labels: int) -> int:
    """One logit for two labels (sigmoid), one per label for more (softmax)."""
    if n_labels < 2:
        raise ValueError(f"a classifier needs at least two labels, got {n_labels}")
    return 1 if n_labels == 2 else n_labels


def mean_loss(logits: np.ndarray, targets: np.ndarray) -> float:
    """The mean BCE (one logit column) or cross-entropy of ``logits`` against label indices,
    in float64 and numerically stable."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(targets)
    if z.shape[1] == 1:
        z = z[:, 0]
        return float(np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))))
    top = z.max(axis=1)
    log_sum = top + np.log(np.exp(z - top[:, None]).sum(axis=1))
    return float(np.mean(log_sum - z[np.arange(len(y)), y]))


def predicted_labels(logits: np.ndarray) -> np.ndarray:
    return (logits[:, 0] > 0).astype(np.int64) if logits.shape[1] == 1 else logits.argmax(axis=1)


def scores(head: LinearHead, embeddings: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """(mean loss, accuracy) of ``head`` on labelled embeddings; the accuracy is that of its
    probabilities, as the validation metrics compute it."""
    loss = mean_loss(head.logits(embeddings), targets)
    predicted = head.probabilities(embeddings).argmax(axis=1)
    return loss, float((predicted == np.asarray(targets)).mean())


class _Trainer(Protocol):
    def step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        """One Adam step on a batch: (summed loss, correct predictions) before the update."""

    def frozen(self) -> LinearHead:
        """The current weights as a head."""


class NumpyTrainer:
    """The head and Adam in float32 numpy, step for step as torch computes them."""

    def __init__(self, dim: int, n_labels: int, learning_rate: float) -> None:
        self.n_labels = n_labels
        outputs = outputs_for(n_labels)
        self.params = [np.zeros((outputs, dim), np.float32), np.zeros(outputs, np.float32)]
        self.first = [np.zeros_like(p) for p in self.params]  # Adam's moving averages
        self.second = [np.zeros_like(p) for p in self.params]
        self.learning_rate = learning_rate
        self.steps = 0

    def step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        weight, bias = self.params
        logits = x @ weight.T + bias
        if self.n_labels == 2:
            probability = 1 / (1 + np.exp(-logits))  # (B, 1)
            error = probability - y[:, None].astype(np.float32)
        else:
            shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
            error = shifted / shifted.sum(axis=1, keepdims=True)
            error[np.arange(len(y)), y] -= 1
        error /= np.float32(len(y))  # the gradient of the batch's mean loss by the logits
        gradients = [error.T @ x, error.sum(axis=0)]
        self._adam(gradients)
        return mean_loss(logits, y) * len(y), int((predicted_labels(logits) == y).sum())

    def _adam(self, gradients: list[np.ndarray]) -> None:
        """torch.optim.Adam's update (its single-tensor form, no weight decay)."""
        beta1, beta2 = BETAS
        self.steps += 1
        step_size = self.learning_rate / (1 - beta1**self.steps)
        correction2 = math.sqrt(1 - beta2**self.steps)
        for param, grad, first, second in zip(
            self.params, gradients, self.first, self.second, strict=True
        ):
            first += (grad - first) * np.float32(1 - beta1)
            second *= np.float32(beta2)
            second += np.float32(1 - beta2) * grad * grad
            denominator = np.sqrt(second) / np.float32(correction2) + np.float32(EPS)
            param -= np.float32(step_size) * first / denominator

    def frozen(self) -> LinearHead:
        return LinearHead(self.params[0].copy(), self.params[1].copy(), self.n_labels)


def trainable_head(dim: int, n_labels: int) -> torch.nn.Module:
    """The head as a torch module (its layer is ``linear``), for its gradient."""
    from torch import nn

    class TrainableHead(nn.Module):
        """The head as a torch module, for its gradient."""

        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(dim, outputs_for(n_labels))

        def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
            logits: torch.Tensor = self.linear(embeddings)
            return logits

    return TrainableHead()


class TorchTrainer:
    """The head as a torch module, with torch's losses and Adam."""

    def __init__(self, dim: int, n_labels: int, learning_rate: float) -> None:
        import torch
        from torch import nn

        self.n_labels = n_labels
        self.head = trainable_head(dim, n_labels)
        linear = _linear(self.head)
        nn.init.zeros_(linear.weight)
        nn.init.zeros_(linear.bias)
        self.optimiser = torch.optim.Adam(
            self.head.parameters(), lr=learning_rate, betas=BETAS, eps=EPS
        )

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        from torch.nn import functional

        if self.n_labels == 2:
            return functional.binary_cross_entropy_with_logits(logits[:, 0], targets.float())
        return functional.cross_entropy(logits, targets)

    def step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        import torch

        targets = torch.from_numpy(y)
        logits = self.head(torch.from_numpy(x))
        loss = self.loss(logits, targets)
        self.optimiser.zero_grad()
        loss.backward()
        self.optimiser.step()
        correct = int((predicted_labels(logits.detach().numpy()) == y).sum())
        return float(loss.detach()) * len(y), correct

    def frozen(self) -> LinearHead:
        return frozen_head(self.head, self.n_labels)


def _linear(module: torch.nn.Module) -> torch.nn.Linear:
    return cast("torch.nn.Linear", module.linear)


def frozen_head(module: torch.nn.Module, n_labels: int) -> LinearHead:
    """The weights of a :func:`trainable_head` as the numpy head predictions use."""
    linear = _linear(module)
    return LinearHead(
        linear.weight.detach().numpy().copy(), linear.bias.detach().numpy().copy(), n_labels
    )


def trainer_for(name: str, dim: int, n_labels: int, learning_rate: float) -> _Trainer:
    if name == NUMPY:
        return NumpyTrainer(dim, n_labels, learning_rate)
    if name == TORCH:
        return TorchTrainer(dim, n_labels, learning_rate)
    raise ConfigError(f"Unknown trainer {name!r}: use one of {', '.join(TRAINERS)}.")


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
    trainer: str | None = None,
) -> tuple[LinearHead, list[EpochStats]]:
    """Train a head with Adam on raw ``embeddings`` (N, dim) and label indices, with
    ``trainer`` (default: :func:`default_trainer`).

    After each epoch the head is scored on the held-out ``validation`` (embeddings, targets).
    Deterministic: zero initial weights and a seeded shuffle. (Standardising the embeddings
    first was tried: no better held-out accuracy on the shared photos, so the head stays a
    plain linear layer on the backbone's output.)
    """
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    y = np.asarray(targets, dtype=np.int64)
    model = trainer_for(trainer or default_trainer(), x.shape[1], n_labels, learning_rate)
    rng = np.random.default_rng(seed)
    history = []
    for epoch in range(1, epochs + 1):
        total_loss, correct = 0.0, 0
        for batch in batches(len(x), batch_size, rng):
            batch_loss, batch_correct = model.step(x[batch], y[batch])
            total_loss += batch_loss
            correct += batch_correct
        val_loss, val_accuracy = scores(model.frozen(), *validation)
        stats = EpochStats(epoch, total_loss / len(x), correct / len(x), val_loss, val_accuracy)
        history.append(stats)
        if on_epoch is not None:
            on_epoch(stats)
    return model.frozen(), history
