"""Local mode: the product's use cases in this process, on the stores the settings name (an
embedded SQLite registry and a folder by default), acting as ``desktop-admin``.

Long jobs (imports, retrains) run in a child process (:mod:`desktop.jobs`) unless a worker
serves the queue: one whose heartbeat is fresh gets the retrain, as the edge server's do. A
fresh home gets the model shipped with the app (if any) as its champion."""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from core.app import App
from core.config import Settings
from core.errors import ClassifiError
from core.wire import LabelIssue, ModelSummary, Prediction, RetrainOutcome, Submission
from desktop.backends.base import LOCAL, Backend, Queued

ADMIN_ACTOR = "desktop-admin"
#: A worker whose heartbeat is younger than this serves the queue (it beats every minute).
HEARTBEAT_FRESH_S = 180.0


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

    def __init__(self, settings: Settings, *, shipped_model: Path | None = None) -> None:
        super().__init__(settings, App(settings, actor=ADMIN_ACTOR))
        self.shipped_model = shipped_model
        self._first_load = threading.Lock()
        self._install = threading.Lock()
        self._model_loaded = False

    def describe(self) -> str:
        return "Local"

    def champion(self) -> ModelSummary | None:
        """The champion; in a home without any model, the shipped one becomes it."""
        return super().champion() or self._install_shipped()

    def _install_shipped(self) -> ModelSummary | None:
        """The shipped model as champion of a home without any model (else nothing)."""
        if self.shipped_model is None:
            return None
        with self._install:  # the first classification and the status bar may race here
            return self.api.install_model(self.shipped_model.read_bytes())

    def audit_labels(self) -> list[LabelIssue]:
        """The label audit, run in a spawned child process (see ``audit_labels_in_child``)."""
        from concurrent.futures import ProcessPoolExecutor

        from desktop.job_process import audit_labels_in_child

        self.check_admin()
        spawn = multiprocessing.get_context("spawn")  # never fork a process running Qt
        with ProcessPoolExecutor(1, mp_context=spawn) as child:
            issues = child.submit(audit_labels_in_child, self.settings, ADMIN_ACTOR).result()
        return [LabelIssue.from_dict(issue) for issue in issues]

    def use_labels(self, labels: Sequence[str]) -> None:
        """Take the label set an import saved in the home (from now on in this process too)."""
        self.settings = self.settings.model_copy(update={"labels": tuple(labels)})
        self.api.settings = self.settings

    def worker_serves_queue(self) -> bool:
        """Whether a worker's heartbeat on this home's queue is fresh."""
        from worker.tasks import worker_heartbeat

        beat = worker_heartbeat(self.settings)
        return beat is not None and time.time() - beat < HEARTBEAT_FRESH_S

    def jobs_run_here(self) -> bool:
        return not self.worker_serves_queue()

    def _load_model_once(self) -> None:
        """The first model load, with the collector paused (see :func:`collector_paused`).
        Later champions load on the predictor's own background thread."""
        with self._first_load:
            if self._model_loaded:
                return
            self._model_loaded = True
            # A failure (e.g. NoChampion) is the classification's to report.
            with collector_paused(), contextlib.suppress(ClassifiError):
                self._install_shipped()
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
