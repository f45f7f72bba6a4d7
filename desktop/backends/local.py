"""Local mode: the product's use cases in this process, on the stores the settings name (an
embedded SQLite registry and a folder by default), acting as ``desktop-admin``."""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator, Sequence

from core.app import App
from core.config import Settings
from core.errors import ClassifiError
from core.wire import Prediction, RetrainOutcome, Submission
from desktop.backends.base import LOCAL, Backend, Queued

ADMIN_ACTOR = "desktop-admin"


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's garbage collector while torch and the model load on a pool thread.

    The load creates about a million long-lived objects, and each full collection it triggers
    walks them all holding the GIL: the GUI thread froze for 100-300 ms several times.
    Afterwards what was loaded (modules, the model: never garbage) is frozen out of later
    collections."""
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


class LocalBackend(Backend):
    """An in-process :class:`~core.app.App`; the admin password guards the admin use cases."""

    mode = LOCAL
    api: App

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, App(settings, actor=ADMIN_ACTOR))
        self._first_load = threading.Lock()
        self._model_loaded = False

    def describe(self) -> str:
        return "Local"

    def _load_model_once(self) -> None:
        """The first model load, with the collector paused (see :func:`collector_paused`).
        Later champions load on the predictor's own background thread."""
        with self._first_load:
            if self._model_loaded:
                return
            self._model_loaded = True
            # A failure (e.g. NoChampion) is the classification's to report.
            with collector_paused(), contextlib.suppress(ClassifiError):
                self.api.load_model()  # torch, timm and the weights load here

    def classify(self, photos: Sequence[bytes]) -> list[Prediction | ClassifiError]:
        self._load_model_once()
        return super().classify(photos)

    def submit(self, data: bytes, label: str, *, source: str) -> Submission | Queued:
        self._load_model_once()  # a submission is classified when it is stored
        return super().submit(data, label, source=source)

    # --- Admin -----------------------------------------------------------------------------
    def needs_admin_password_choice(self) -> bool:
        return self.api.needs_admin_password()

    def choose_admin_password(self, password: str) -> None:
        self.api.choose_admin_password(password)

    def sign_in(self, secret: str) -> None:
        self.api.verify_admin_password(secret)
        self.admin_signed_in = True

    def retrain(self) -> str:
        from worker.tasks import enqueue_retrain  # the pattern huey documents for producers

        self.check_admin()
        return enqueue_retrain(self.settings, actor=ADMIN_ACTOR)

    def retrain_result(self, task_id: str) -> RetrainOutcome | None:
        from worker.tasks import task_result

        result = task_result(self.settings, task_id)
        return None if result is None else RetrainOutcome.from_dict(result)
