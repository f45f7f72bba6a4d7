"""What a model knows about its own answers, fitted on its validation split and stored with it.

- **Temperature scaling**: one number ``T`` that divides the head's logits so that the
  confidence of the validation answers matches their accuracy (Guo et al., 2017). The
  predicted label never changes; only how sure the model says it is.
- **The unsure threshold**: the lowest calibrated confidence above which the validation
  answers reach :data:`UNSURE_TARGET_ACCURACY`; answers below it are ``unsure``.
- **Out of distribution**: a photo whose embedding is farther from the training photos'
  than nearly every in-distribution photo's (the mean cosine distance to its
  :data:`OOD_NEIGHBOURS` nearest training embeddings, above the :data:`OOD_QUANTILE` of
  those of the validation photos and of the training photos left out one at a time). The
  training embeddings go with the model (at most :data:`OOD_BANK_SIZE`, in float16).

Free of torch: the predictor applies it to every answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.model.head import LinearHead

UNSURE_TARGET_ACCURACY = 0.99
# Measured on Lite0 over 10 seeded 70/30 splits of the shared photos: the mean distance to
# 20 neighbours beyond the 0.96 quantile flags 3.8% of the held-out photos (at most 7.8%)
# and 94% of tests/quality's non-plant images (at least 90%); with 5 neighbours, 3.7% and
# 79%; at the 0.98 quantile 20 neighbours give 1.7% and 88%.
OOD_NEIGHBOURS = 20
OOD_QUANTILE = 0.96
OOD_BANK_SIZE = 2000
#: The temperatures searched (log-spaced): wide enough for any head Adam gives in 10 epochs.
_TEMPERATURES = np.exp(np.linspace(np.log(0.05), np.log(20.0), 400))


@dataclass(frozen=True)
class Calibration:
    temperature: float
    unsure_below: float  # calibrated confidence below which an answer is unsure
    target_accuracy: float
    ood_threshold: float  # mean cosine distance to the nearest training embeddings
    ood_neighbours: int
    bank: np.ndarray  # (M, dim) L2-normalised training embeddings, float16

    def summary(self) -> dict[str, Any]:
        """The scalars, JSON-able: kept in the version's metrics and shown in the models view."""
        return {
            "temperature": self.temperature,
            "unsure_below": self.unsure_below,
            "target_accuracy": self.target_accuracy,
            "ood_threshold": self.ood_threshold,
            "ood_neighbours": self.ood_neighbours,
            "ood_bank_size": len(self.bank),
        }

    def as_record(self) -> dict[str, Any]:
        """What the artifact stores (the bank as an array)."""
        return {**self.summary(), "bank": self.bank}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Calibration:
        bank = np.asarray(record["bank"], dtype=np.float16)
        if bank.ndim != 2:
            raise ValueError(f"the calibration's embedding bank has shape {bank.shape}")
        return cls(
            temperature=float(record["temperature"]),
            unsure_below=float(record["unsure_below"]),
            target_accuracy=float(record["target_accuracy"]),
            ood_threshold=float(record["ood_threshold"]),
            ood_neighbours=int(record["ood_neighbours"]),
            bank=bank,
        )

    def ood_scores(self, embeddings: np.ndarray) -> np.ndarray:
        return knn_distances(normalised(embeddings), self.bank, self.ood_neighbours)

    def out_of_distribution(self, embeddings: np.ndarray) -> np.ndarray:
        """One boolean per embedding."""
        return self.ood_scores(embeddings) > self.ood_threshold


def normalised(embeddings: np.ndarray) -> np.ndarray:
    vectors = np.asarray(embeddings, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    result: np.ndarray = vectors / np.maximum(norms, 1e-12)
    return result


def knn_distances(
    queries: np.ndarray, bank: np.ndarray, k: int, *, leave_out_self: bool = False
) -> np.ndarray:
    """The mean cosine distance of each (normalised) query to its ``k`` nearest bank rows;
    ``leave_out_self`` when the queries are the bank (row i is not its own neighbour)."""
    similarity = queries.astype(np.float32) @ bank.astype(np.float32).T
    if leave_out_self:
        np.fill_diagonal(similarity, -np.inf)
    k = min(k, similarity.shape[1] - (1 if leave_out_self else 0))
    nearest = -np.partition(-similarity, k - 1, axis=1)[:, :k]
    result: np.ndarray = 1.0 - nearest.mean(axis=1)
    return result


def temperature_of(calibration: Calibration | None) -> float:
    """The logits' divisor: 1 for a model trained before calibration."""
    return calibration.temperature if calibration is not None else 1.0


def nll(logits: np.ndarray, targets: np.ndarray, temperature: float, n_labels: int) -> float:
    probabilities = LinearHead.probabilities_of(logits / temperature, n_labels)
    chosen = probabilities[np.arange(len(targets)), targets]
    return float(-np.log(np.clip(chosen, 1e-12, 1.0)).mean())


def fit_temperature(logits: np.ndarray, targets: np.ndarray, n_labels: int) -> float:
    """The temperature that minimises the negative log-likelihood of the validation labels."""
    losses = [nll(logits, targets, t, n_labels) for t in _TEMPERATURES]
    return float(_TEMPERATURES[int(np.argmin(losses))])


def unsure_threshold(
    confidence: np.ndarray, correct: np.ndarray, target: float, n_labels: int
) -> float:
    """The lowest confidence c such that the answers with confidence >= c are right at
    least ``target`` of the time (1.0, everything unsure, when even the surest are not)."""
    order = np.argsort(-confidence, kind="stable")
    ranked, hits = confidence[order], correct[order].astype(np.float64)
    accuracy = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    reaching = np.flatnonzero(accuracy >= target)
    if not len(reaching):
        return 1.0
    return float(max(ranked[reaching[-1]], 1.0 / n_labels))


def calibrate(
    head: LinearHead,
    train_embeddings: np.ndarray,
    validation_embeddings: np.ndarray,
    validation_targets: np.ndarray,
    *,
    target_accuracy: float = UNSURE_TARGET_ACCURACY,
    seed: int = 0,
) -> Calibration:
    """Fit the temperature, the unsure threshold and the out-of-distribution threshold of
    ``head`` on its validation split; its training embeddings make the bank."""
    logits = head.logits(validation_embeddings).astype(np.float64)
    temperature = fit_temperature(logits, validation_targets, head.n_labels)
    probabilities = head.probabilities(validation_embeddings, temperature)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == validation_targets

    bank = normalised(train_embeddings)
    if len(bank) > OOD_BANK_SIZE:
        keep = np.random.default_rng(seed).choice(len(bank), OOD_BANK_SIZE, replace=False)
        bank = bank[np.sort(keep)]
    bank = bank.astype(np.float16)
    in_distribution = np.concatenate(
        [
            knn_distances(normalised(validation_embeddings), bank, OOD_NEIGHBOURS),
            knn_distances(bank, bank, OOD_NEIGHBOURS, leave_out_self=True),
        ]
    )
    return Calibration(
        temperature=temperature,
        unsure_below=unsure_threshold(confidence, correct, target_accuracy, head.n_labels),
        target_accuracy=target_accuracy,
        ood_threshold=float(np.quantile(in_distribution, OOD_QUANTILE)),
        ood_neighbours=OOD_NEIGHBOURS,
        bank=bank,
    )
