"""The core objects one server process uses, built once at start and shared by all routes."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from flask import current_app

from core import metrics
from core.config import Settings
from core.errors import NoChampion
from core.model.prediction import Prediction
from core.model.predictor import Predictor
from core.model.versions import ModelSummary
from core.registry import Registry
from core.serving import MicroBatcher
from core.store import ObjectStore, open_store

log = logging.getLogger(__name__)


@dataclass
class Services:
    """The core objects one server process uses, built once at start."""

    settings: Settings
    registry: Registry
    store: ObjectStore
    predictor: Predictor
    batcher: MicroBatcher[Any, Prediction] = field(init=False)
    served_model: tuple[int, str] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.batcher = MicroBatcher(
            self.predictor.predict,
            max_size=self.settings.batch_max_size,
            max_delay_s=self.settings.batch_max_delay_ms / 1000,
        )

    @classmethod
    def build(cls, settings: Settings) -> Services:
        registry = Registry(settings.registry_url)
        store = open_store(settings)
        return cls(settings, registry, store, Predictor(settings, registry, store))

    def load_model(self) -> None:
        """Load the champion now (at start), so that no request pays for it."""
        try:
            self._note(self.predictor.ensure_loaded().info)
        except NoChampion as exc:
            log.warning("%s The server answers 503 on /predict until one is promoted.", exc)

    def refresh_model(self) -> ModelSummary:
        """The champion being served, after a cheap (throttled) check for a newer one."""
        self.predictor.refresh()
        info = self.predictor.info  # NoChampion when there is none
        self._note(info)
        return info

    def _note(self, info: ModelSummary) -> None:
        """Export the served model version as a metric when it changed."""
        served = (info.version, info.backbone)
        if served != self.served_model:
            metrics.set_model(*served, previous=self.served_model)
            self.served_model = served

    def close(self) -> None:
        self.batcher.close()
        self.registry.dispose()


def current() -> Services:
    """The services of the app handling this request."""
    services: Services = current_app.extensions["classifi"]
    return services
