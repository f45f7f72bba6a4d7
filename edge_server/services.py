"""What one server process shares between requests: the application, the micro-batcher over
its predictor, and the served-model metric. Built once at start; every route uses it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from flask import current_app

from core import metrics
from core.app import App
from core.config import Settings
from core.errors import ClassifiError, NoChampion
from core.serving import MicroBatcher
from core.wire import ModelSummary, Prediction, ReviewAction, ReviewDecision, Submission

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

#: Who the server's admin routes act as: every review and promotion is audited under it.
ACTOR = "edge-admin"


class Services:
    """The app of this process and what serving adds to it (see the module's docstring)."""

    def __init__(self, app: App) -> None:
        self.app = app
        # Requests never wait for a model load (the app is built not to): ModelLoading, a 503.
        self.batcher: MicroBatcher[Image.Image, Prediction] = MicroBatcher(
            app.classify_images,
            max_size=app.settings.batch_max_size,
            max_delay_s=app.settings.batch_max_delay_ms / 1000,
        )
        self._served: tuple[int, str] | None = None
        self._served_lock = threading.Lock()

    @classmethod
    def build(cls, settings: Settings) -> Services:
        return cls(App(settings, actor=ACTOR, wait_for_model=False))

    @property
    def settings(self) -> Settings:
        return self.app.settings

    def load_model(self) -> None:
        """Load the champion now, at start (blocking), so that no request pays for it."""
        try:
            info = self.app.load_model()
            self._note(info.version, info.backbone)
        except NoChampion as exc:
            log.warning("%s The server answers 503 on /predict until one is promoted.", exc)

    def served_model(self) -> ModelSummary:
        """The model classifying now (ModelLoading or NoChampion, never a wait)."""
        info = self.app.served_model()
        self._note(info.version, info.backbone)
        return info

    def classify_one(self, data: bytes) -> Prediction:
        """One photo, in a backbone pass shared with the concurrent requests."""
        prediction = self.batcher.submit(self.app.check_photo(data).image)
        self._note(prediction.model_version, prediction.backbone)
        _count_prediction(prediction)
        return prediction

    def explain_one(self, data: bytes) -> Prediction:
        """One photo with its heatmap (a pass of its own: the map is not batched)."""
        prediction = self.app.explain(data)
        self._note(prediction.model_version, prediction.backbone)
        _count_prediction(prediction)
        return prediction

    def classify_many(self, photos: Sequence[bytes]) -> list[Prediction | ClassifiError]:
        """Several photos in one request: a prediction or the reason for each, in order."""
        results = self.app.classify(photos)
        predictions = [result for result in results if isinstance(result, Prediction)]
        if predictions:  # the photos went through one model: note it once
            self._note(predictions[0].model_version, predictions[0].backbone)
        for prediction in predictions:
            _count_prediction(prediction)
        return results

    def submit(
        self, data: bytes, label: str, *, source: str, submitted_by: str | None = None
    ) -> Submission:
        """The app's submission, counted by outcome (refused ones too)."""
        try:
            submission = self.app.submit(data, label, source=source, submitted_by=submitted_by)
        except ClassifiError:
            metrics.SUBMISSIONS.labels("refused").inc()
            raise
        if not submission.stored:
            outcome = "duplicate"
        elif submission.duplicate is not None:
            outcome = "near_duplicate"
        else:
            outcome = "stored"
        metrics.SUBMISSIONS.labels(outcome).inc()
        return submission

    def review(
        self, photo_ids: Sequence[int], action: ReviewAction | str, label: str | None = None
    ) -> list[ReviewDecision]:
        """The app's review decisions, counted by outcome."""
        decisions = self.app.review(photo_ids, action, label)
        for decision in decisions:  # the app accepted the action: approve or reject
            if action == ReviewAction.REJECT:
                outcome = "rejected"
            else:
                outcome = "corrected" if decision.new_label != decision.old_label else "approved"
            metrics.REVIEWS.labels(outcome).inc()
        return decisions

    def _note(self, version: int, backbone: str) -> None:
        """Export the model version that answered as a metric when it changed."""
        model = (version, backbone)
        with self._served_lock:
            if model != self._served:
                metrics.set_model(*model, previous=self._served)
                self._served = model

    def close(self) -> None:
        self.batcher.close()
        self.app.close()


def _count_prediction(prediction: Prediction) -> None:
    metrics.PREDICTIONS.labels(prediction.label).inc()
    metrics.CONFIDENCE.observe(prediction.confidence)
    for flag in ("unsure", "out_of_distribution"):
        if getattr(prediction, flag):
            metrics.PREDICTION_FLAGS.labels(flag).inc()


def current() -> Services:
    """The services of the app handling this request."""
    services: Services = current_app.extensions["classifi"]
    return services
