"""Classification metrics of a model on labelled photos, computed with numpy.

The result is JSON-able: it is stored with the model version, in the artifact and in MLflow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

ECE_BINS = 10

#: The key of a version's metrics that holds its per-epoch history (see :func:`epoch_history`).
HISTORY_KEY = "epochs"
#: The key of a version's metrics that holds its calibration's scalars
#: (:meth:`core.model.calibration.Calibration.summary`); absent for older versions.
CALIBRATION_KEY = "calibration"


@dataclass(frozen=True)
class EpochStats:
    """One training epoch: its ``asdict`` is the entry stored in the version's history."""

    epoch: int  # 1-based
    train_loss: float  # mean training loss over the epoch
    train_accuracy: float  # training accuracy over the epoch, as the head stood at each batch
    val_loss: float  # the head at the end of the epoch, on the validation photos
    val_accuracy: float


def epoch_history(metrics: Mapping[str, Any]) -> list[EpochStats]:
    """The per-epoch history kept in a version's metrics; empty for versions trained before
    the history was kept."""
    return [EpochStats(**entry) for entry in metrics.get(HISTORY_KEY, [])]


def classification_metrics(
    targets: np.ndarray, probabilities: np.ndarray, labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, per-label precision/recall/F1, ROC-AUC, confusion matrix and calibration.

    ``targets`` are label indices (N,), ``probabilities`` is (N, len(labels)). ROC-AUC is the
    probability of ``labels[1]`` for two labels, the one-vs-rest macro average for more; it is
    None when a label has no example (undefined).
    """
    targets = np.asarray(targets, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if len(targets) == 0:
        raise ValueError("metrics need at least one example")
    n_labels = len(labels)
    predicted = probabilities.argmax(axis=1)
    confusion = np.zeros((n_labels, n_labels), dtype=np.int64)  # rows: true, columns: predicted
    np.add.at(confusion, (targets, predicted), 1)

    per_label = {}
    for index, label in enumerate(labels):
        true_positive = int(confusion[index, index])
        predicted_count = int(confusion[:, index].sum())
        support = int(confusion[index].sum())
        precision = true_positive / predicted_count if predicted_count else 0.0
        recall = true_positive / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": support,
        }

    if n_labels == 2:
        auc = roc_auc(targets == 1, probabilities[:, 1])
    else:
        per_class = [roc_auc(targets == k, probabilities[:, k]) for k in range(n_labels)]
        defined = [value for value in per_class if value is not None]
        auc = float(np.mean(defined)) if len(defined) == n_labels else None

    return {
        "accuracy": float((predicted == targets).mean()),
        "macro_f1": float(np.mean([m["f1"] for m in per_label.values()])),
        "roc_auc": auc,
        "ece": expected_calibration_error(probabilities, targets),
        "per_label": per_label,
        "confusion_matrix": confusion.tolist(),
        "labels": list(labels),
        "count": len(targets),
    }


def roc_auc(positive: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve: the chance a positive scores above a negative (ties: half)."""
    positive = np.asarray(positive, dtype=bool)
    n_positive = int(positive.sum())
    n_negative = len(positive) - n_positive
    if n_positive == 0 or n_negative == 0:
        return None
    ranks = _average_ranks(np.asarray(scores, dtype=np.float64))
    rank_sum = float(ranks[positive].sum())
    return (rank_sum - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    _, first, counts = np.unique(values[order], return_index=True, return_counts=True)
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(first + (counts + 1) / 2, counts)
    return ranks


def expected_calibration_error(
    probabilities: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS
) -> float:
    """Weighted mean gap between confidence and accuracy over equal-width confidence bins."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == targets
    # Bin k holds confidences in (k/bins, (k+1)/bins]; a confidence of exactly 0 joins bin 0.
    bin_of = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    error = 0.0
    for k in range(bins):
        members = bin_of == k
        if members.any():
            gap = abs(float(correct[members].mean()) - float(confidence[members].mean()))
            error += gap * members.sum() / len(targets)
    return float(error)


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Scalar metrics by name, for MLflow: ``accuracy``, ``f1_<label>``..., skipping None."""
    flat = {
        name: float(metrics[name])
        for name in ("accuracy", "macro_f1", "roc_auc", "ece")
        if metrics.get(name) is not None
    }
    for label, values in metrics["per_label"].items():
        for name in ("precision", "recall", "f1"):
            flat[f"{name}_{label}"] = float(values[name])
    return flat
