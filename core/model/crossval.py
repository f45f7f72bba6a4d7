"""Cross-validation of the head on cached embeddings, trained as ``classifi train`` trains.

Repeated, seeded, stratified k folds. In each fold the training photos are split 70/30 as
training splits them: the head (the specification's trainer) learns on the 70%, its
calibration (:mod:`core.model.calibration`) is fitted on the 30%, and the held-out fold is
answered. ``vectors`` holds each view's embeddings of every photo (``"original"`` at
least): the head may learn on several views (augmentation), and the answers may average
several (test-time averaging: for a linear head, the mean embedding's logit is the mean
logit). bench/accuracy.py compares configurations with it; tests/quality holds the default
to the goals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from core.model.calibration import calibrate
from core.model.metrics import expected_calibration_error

LEARNING_RATE, BATCH_SIZE = 0.003, 32  # the specification's trainer
VALIDATION_FRACTION = 0.3  # as classifi train


@dataclass
class Scores:
    """One value per held-out fold; ``unsure`` and ``out_of_distribution`` are the shares of
    its photos so called."""

    accuracy: list[float]
    ece: list[float]
    unsure: list[float]
    out_of_distribution: list[float]


def cross_validate(
    vectors: Mapping[str, np.ndarray],
    targets: np.ndarray,
    n_labels: int,
    *,
    epochs: int,
    train_views: Sequence[str],
    test_views: Sequence[str],
    folds: int,
    repeats: int,
    first_seed: int = 0,
) -> Scores:
    """The scores of each of ``repeats`` x ``folds`` held-out folds; repeat ``r`` shuffles and
    trains with seed ``first_seed + r`` (choose a configuration on some seeds, confirm it on
    others)."""
    from sklearn.model_selection import StratifiedKFold, train_test_split

    from core.model.fitting import fit_head

    scores = Scores([], [], [], [])
    seen = np.mean([vectors[view] for view in test_views], axis=0)  # test-time averaging
    for repeat in range(first_seed, first_seed + repeats):
        splitter = StratifiedKFold(folds, shuffle=True, random_state=repeat)
        for train, test in splitter.split(seen, targets):
            learn, validation = train_test_split(
                train,
                test_size=VALIDATION_FRACTION,
                stratify=targets[train],
                random_state=repeat,
            )
            x = np.concatenate([vectors[view][learn] for view in train_views])
            y = np.tile(targets[learn], len(train_views))
            head, _ = fit_head(
                x,
                y,
                n_labels,
                validation=(seen[validation], targets[validation]),
                learning_rate=LEARNING_RATE,
                epochs=epochs,
                batch_size=BATCH_SIZE,
                seed=repeat,
            )
            calibration = calibrate(
                head, vectors["original"][learn], seen[validation], targets[validation]
            )
            probabilities = head.probabilities(seen[test], calibration.temperature)
            confidence = probabilities.max(axis=1)
            scores.accuracy.append(float((probabilities.argmax(axis=1) == targets[test]).mean()))
            scores.ece.append(expected_calibration_error(probabilities, targets[test]))
            scores.unsure.append(float((confidence < calibration.unsure_below).mean()))
            scores.out_of_distribution.append(
                float(calibration.out_of_distribution(seen[test]).mean())
            )
    return scores
