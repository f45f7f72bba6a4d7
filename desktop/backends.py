"""The two ways the desktop reaches the product, behind one interface.

- :class:`LocalBackend` calls the core services on the embedded (or configured) stores.
- :class:`RemoteBackend` talks HTTP to an edge server; submissions made while it is
  unreachable wait in an :class:`~desktop.outbox.Outbox` and are sent when it answers again.

Both have the same methods and answer with the same core objects, so every window works in
either mode. Every method may block (database, network): call them through ``run_task``.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import requests
from prometheus_client.parser import text_string_to_metric_families
from PySide6.QtCore import QSettings

from core.auth import DESKTOP_ADMIN_PASSWORD, choose_password, has_secret, verify_secret
from core.config import Settings
from core.errors import (
    AuthError,
    ClassifiError,
    Conflict,
    ImageTooLarge,
    InvalidImage,
    ModelError,
    NoChampion,
    NotFound,
    TrainingRefused,
    UnknownLabel,
    UnsupportedMediaType,
)
from core.imaging import CONTENT_TYPES, EXTENSIONS, CheckedPhoto, check_photo
from core.registry import Registry
from core.store import ObjectStore, open_store
from core.usage import record_usage, usage_counts
from desktop.outbox import Outbox

if TYPE_CHECKING:
    from core.loop.review import PendingPhoto, ReviewDecision
    from core.model.predictor import Predictor
    from core.model.versions import ModelSummary

log = logging.getLogger(__name__)
T = TypeVar("T")

CLIENT = "desktop"
ADMIN_ACTOR = "desktop-admin"
LOCAL, REMOTE = "local", "remote"


class ServerUnreachable(ClassifiError):
    """The edge server does not answer (down, wrong URL, no network)."""


class Backend(ABC):
    """What the windows need from the product."""

    mode: str

    @abstractmethod
    def describe(self) -> str:
        """A short text for the status bar, e.g. "Local" or "Remote: http://…"."""

    @abstractmethod
    def champion(self) -> ModelSummary | None:
        """The current champion, or None when no model has been promoted yet."""

    @abstractmethod
    def classify(self, photos: list[CheckedPhoto]) -> list[Any]:
        """One core ``Prediction`` per photo, in order (raises ``NoChampion``)."""

    @abstractmethod
    def record_usage(self, event: str, count: int = 1) -> None:
        """Count a usage event (session, photos_classified, submissions, reviews)."""

    @abstractmethod
    def usage(self) -> dict[str, int]:
        """The usage counts by event."""

    @abstractmethod
    def submit(self, path: Path, label: str) -> Any:
        """Submit the photo at ``path`` with ``label`` for review: a core ``Submission``, or
        :data:`QUEUED` when it waits to be sent."""

    # Admin (sign in first) -----------------------------------------------------------------
    admin_signed_in: bool = False

    @abstractmethod
    def needs_admin_password_choice(self) -> bool:
        """True on first use in local mode: no admin password has been chosen yet."""

    @abstractmethod
    def choose_admin_password(self, password: str) -> None:
        """Store the first admin password (local mode)."""

    @abstractmethod
    def sign_in(self, secret: str) -> None:
        """Check the admin password (local) or token (remote); raise ``AuthError`` if wrong."""

    @abstractmethod
    def pending(self) -> list[PendingPhoto]:
        """Pending submissions, most useful first."""

    @abstractmethod
    def submission_image(self, photo_id: int) -> bytes:
        """The submitted photo's bytes."""

    @abstractmethod
    def review(self, photo_ids: list[int], action: str, label: str | None) -> list[ReviewDecision]:
        """Approve (with ``label``, or the proposed one) or reject photos, all or none."""

    @abstractmethod
    def undo_review(self, count: int) -> list[ReviewDecision]:
        """Undo the admin's last ``count`` review decisions (one bulk action)."""

    @abstractmethod
    def audit_log(self, limit: int = 500) -> list[dict[str, Any]]:
        """The newest audit entries first, as dicts."""

    @abstractmethod
    def versions(self) -> list[ModelSummary]:
        """Every model version, newest first."""

    @abstractmethod
    def promote(self, version: int) -> ModelSummary:
        """Make ``version`` the champion (admin)."""

    @abstractmethod
    def rollback(self) -> ModelSummary:
        """Make the previous champion the champion again (admin)."""

    @abstractmethod
    def retrain(self) -> str:
        """Ask the workers to retrain now; the task id (the UI never trains itself)."""

    @abstractmethod
    def retrain_result(self, task_id: str) -> dict[str, Any] | None:
        """The retrain's outcome, or None while it waits or runs."""

    def waiting_to_sync(self) -> int:
        """How many submissions wait for the server (always 0 in local mode)."""
        return 0

    def sync(self) -> int:
        """Send what waits; return how many were sent (nothing waits in local mode)."""
        return 0


QUEUED = "queued"  # what submit() answers when the submission waits in the outbox


def describe_submission(answer: Any) -> str:
    """One line for the user about what became of a submission."""
    if answer == QUEUED:
        return "Waiting to sync: the server is unreachable; it is sent when it answers."
    duplicate = answer.duplicate
    if duplicate is not None and not answer.stored:
        return f"Already known: this photo is #{duplicate.photo_id} ({duplicate.status})."
    text = f"Submitted as #{answer.photo_id}, waiting for review."
    if duplicate is not None:
        text += (
            f" It looks like photo #{duplicate.photo_id} ({duplicate.status}, distance "
            f"{duplicate.distance:.3f}): the reviewer will see it."
        )
    return text


def open_backend(settings: Settings, prefs: QSettings) -> Backend:
    """The backend the preferences choose (local unless a server URL is set to be used)."""
    if prefs.value("mode", LOCAL) == REMOTE:
        return RemoteBackend(
            settings,
            url=str(prefs.value("server/url", "http://127.0.0.1:8000")),
            api_key=str(prefs.value("server/api_key", "")) or None,
        )
    return LocalBackend(settings)


class Lazy(Generic[T]):
    """A value built on first use, once, under a lock (first use is on a pool thread)."""

    def __init__(self, build: Any) -> None:
        self._build = build
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        with self._lock:
            if self._value is None:
                self._value = self._build()
            return self._value

    @property
    def built(self) -> bool:
        return self._value is not None


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


def photo_name(path: Path) -> str:
    return path.name or "photo"


class LocalBackend(Backend):
    """Core services on the stores named by the settings (embedded by default)."""

    mode = LOCAL

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Opening the registry runs migrations: done on first use, off the GUI thread.
        self._registry: Lazy[Registry] = Lazy(lambda: Registry(settings.registry_url))
        self._store: Lazy[ObjectStore] = Lazy(lambda: open_store(settings))
        self._predictor: Lazy[Predictor] = Lazy(self._build_predictor)

    def _build_predictor(self) -> Predictor:
        with collector_paused():
            from core.model.predictor import Predictor  # torch loads here, not at start-up

            predictor = Predictor(self.settings, self.registry, self.store)
            with contextlib.suppress(ClassifiError):  # e.g. NoChampion: predict() raises it
                predictor.ensure_loaded()  # timm and the weights load here, GC paused too
        return predictor

    @property
    def registry(self) -> Registry:
        return self._registry.get()

    @property
    def store(self) -> ObjectStore:
        return self._store.get()

    @property
    def predictor(self) -> Predictor:
        return self._predictor.get()

    def describe(self) -> str:
        return "Local"

    def champion(self) -> ModelSummary | None:
        from core.model.versions import ModelSummary, champion

        row = champion(self.registry)
        return None if row is None else ModelSummary.of(row)

    def classify(self, photos: list[CheckedPhoto]) -> list[Any]:
        self.predictor.refresh()  # picks up a champion promoted meanwhile (cheap, throttled)
        return list(self.predictor.predict([photo.image for photo in photos]))

    def record_usage(self, event: str, count: int = 1) -> None:
        record_usage(self.registry, CLIENT, event, count)

    def submit(self, path: Path, label: str) -> Any:
        from core.loop.submissions import submit_photo

        return submit_photo(
            self.settings,
            self.registry,
            self.store,
            path.read_bytes(),
            label,
            source=str(path),
            submitted_by=CLIENT,
            predictor=self.predictor,
        )

    # Admin ---------------------------------------------------------------------------------
    def needs_admin_password_choice(self) -> bool:
        return not has_secret(self.registry, DESKTOP_ADMIN_PASSWORD)

    def choose_admin_password(self, password: str) -> None:
        choose_password(self.registry, DESKTOP_ADMIN_PASSWORD, password)

    def sign_in(self, secret: str) -> None:
        verify_secret(self.registry, DESKTOP_ADMIN_PASSWORD, secret)
        self.admin_signed_in = True

    def _check_admin(self) -> None:
        if not self.admin_signed_in:
            raise AuthError("Sign in as admin first (Tools > Review submissions).")

    def pending(self) -> list[PendingPhoto]:
        from core.loop.review import list_pending

        self._check_admin()
        return list_pending(self.registry)

    def submission_image(self, photo_id: int) -> bytes:
        from core.loop.review import photo_image

        self._check_admin()
        return photo_image(self.registry, self.store, photo_id)[0]

    def review(self, photo_ids: list[int], action: str, label: str | None) -> list[ReviewDecision]:
        from core.loop.review import approve, reject

        self._check_admin()
        if action == "approve":
            return approve(
                self.settings, self.registry, self.store, photo_ids, actor=ADMIN_ACTOR, label=label
            )
        if action == "reject":
            return reject(self.settings, self.registry, self.store, photo_ids, actor=ADMIN_ACTOR)
        raise ValueError(f"Unknown review action {action!r}: use 'approve' or 'reject'.")

    def undo_review(self, count: int) -> list[ReviewDecision]:
        from core.loop.review import undo_last

        self._check_admin()
        return [
            undo_last(self.settings, self.registry, self.store, actor=ADMIN_ACTOR)
            for _ in range(count)
        ]

    def versions(self) -> list[ModelSummary]:
        from core.loop.models_admin import list_models

        return list_models(self.registry)

    def promote(self, version: int) -> ModelSummary:
        from core.loop.models_admin import promote

        self._check_admin()
        return promote(self.settings, self.registry, self.store, version, actor=ADMIN_ACTOR)

    def rollback(self) -> ModelSummary:
        from core.loop.models_admin import rollback

        self._check_admin()
        return rollback(self.settings, self.registry, self.store, actor=ADMIN_ACTOR)

    def retrain(self) -> str:
        from worker.tasks import enqueue_retrain  # the pattern huey documents for producers

        self._check_admin()
        return enqueue_retrain(self.settings, actor=ADMIN_ACTOR)

    def retrain_result(self, task_id: str) -> dict[str, Any] | None:
        from worker.tasks import task_result

        return task_result(self.settings, task_id)

    def audit_log(self, limit: int = 500) -> list[dict[str, Any]]:
        from core.loop.review import audit_log

        self._check_admin()
        return audit_log(self.registry, limit)

    def usage(self) -> dict[str, int]:
        return usage_counts(self.registry, CLIENT)


# HTTP statuses of the edge server's JSON errors, back to the project's exceptions.
_ERROR_BY_STATUS: dict[int, type[ClassifiError]] = {
    400: InvalidImage,
    401: AuthError,
    403: AuthError,
    404: NotFound,
    409: Conflict,
    413: ImageTooLarge,
    415: UnsupportedMediaType,
    422: TrainingRefused,
}
_ERROR_BY_CODE: dict[str, type[ClassifiError]] = {
    "no_champion": NoChampion,
    "unknown_label": UnknownLabel,
}
_TYPE_BY_EXTENSION = {EXTENSIONS[name]: CONTENT_TYPES[name] for name in EXTENSIONS}
REQUEST_TIMEOUT_S = 60.0
BATCH_FILES = 16  # per /predict/batch request, below the server's default cap of 32
PAGE_SIZE = 500  # the edge server's largest page of pending submissions


class RemoteBackend(Backend):
    """An edge server over HTTP. Submissions wait in the outbox while it is unreachable."""

    mode = REMOTE

    def __init__(self, settings: Settings, url: str, api_key: str | None = None) -> None:
        self.settings = settings
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.admin_token: str | None = None  # asked for by the review window, kept in memory
        self.outbox = Outbox(settings.home / "desktop-outbox")
        self._http = requests.Session()

    def describe(self) -> str:
        return f"Remote: {self.url}"

    # HTTP ----------------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, admin: bool = False, **kwargs: Any) -> Any:
        """The decoded JSON answer, or the project's exception for an error answer."""
        headers = kwargs.pop("headers", {})
        token = self.admin_token if admin else self.api_key
        if admin and not token:
            raise AuthError("The admin token is needed: enter it to open the review window.")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            response = self._http.request(
                method, self.url + path, headers=headers, timeout=REQUEST_TIMEOUT_S, **kwargs
            )
        except requests.RequestException as exc:
            raise ServerUnreachable(
                f"The edge server at {self.url} does not answer ({type(exc).__name__}). "
                "Check that it runs and the URL in File > Settings is right."
            ) from None
        if response.ok:
            return response.json() if response.content else None
        try:
            error = response.json()["error"]
            code, message = str(error["code"]), str(error["message"])
        except (ValueError, KeyError, TypeError):
            code, message = "http_error", f"HTTP {response.status_code} from {self.url}{path}"
        cls = _ERROR_BY_CODE.get(code) or _ERROR_BY_STATUS.get(response.status_code)
        if cls is None:
            raise ServerUnreachable(f"The edge server failed: {message}")
        raise cls(message)

    # Classify ------------------------------------------------------------------------------
    def champion(self) -> ModelSummary | None:
        from core.model.versions import ModelSummary

        try:
            return ModelSummary.from_dict(self._request("GET", "/model"))  # open to all
        except NoChampion:
            return None

    def versions(self) -> list[ModelSummary]:
        from core.model.versions import ModelSummary

        answer = self._request("GET", "/models", admin=True)
        return [ModelSummary.from_dict(item) for item in answer["models"]]

    def promote(self, version: int) -> ModelSummary:
        from core.model.versions import ModelSummary

        answer = self._request("POST", f"/admin/models/{version}/promote", admin=True)
        return ModelSummary.from_dict(answer)

    def rollback(self) -> ModelSummary:
        from core.model.versions import ModelSummary

        return ModelSummary.from_dict(self._request("POST", "/admin/models/rollback", admin=True))

    def retrain(self) -> str:
        return str(self._request("POST", "/admin/retrain", admin=True)["task_id"])

    def retrain_result(self, task_id: str) -> dict[str, Any] | None:
        answer = self._request("GET", f"/admin/retrain/{task_id}", admin=True)
        if answer["status"] == "failed":
            raise ModelError(answer["error"]["message"])
        result: dict[str, Any] | None = answer["result"]
        return result

    def classify(self, photos: list[CheckedPhoto]) -> list[Any]:
        from core.model.prediction import Prediction

        answers: list[Any] = []
        for start in range(0, len(photos), BATCH_FILES):
            chunk = photos[start : start + BATCH_FILES]
            files = [
                ("files", (f"photo{i}{photo.extension}", photo.data, photo.content_type))
                for i, photo in enumerate(chunk)
            ]
            for result in self._request("POST", "/predict/batch", files=files)["results"]:
                if "error" in result:
                    answers.append(InvalidImage(result["error"]["message"]))
                else:
                    answers.append(Prediction.from_dict(result))
        return answers

    # Usage ---------------------------------------------------------------------------------
    def record_usage(self, event: str, count: int = 1) -> None:
        self._request("POST", "/usage", json={"event": event, "count": count})

    def usage(self) -> dict[str, int]:
        """The desktop's counters, read from the server's Prometheus metrics."""
        try:
            response = self._http.get(f"{self.url}/metrics", timeout=REQUEST_TIMEOUT_S)
            response.raise_for_status()
        except requests.RequestException as exc:
            raise ServerUnreachable(f"Cannot read {self.url}/metrics: {exc}") from None
        counts: dict[str, int] = {}
        for family in text_string_to_metric_families(response.text):
            if family.name != "classifi_client_events":
                continue
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels.get("client") == CLIENT:
                    counts[sample.labels["event"]] = int(sample.value)
        return counts

    def waiting_to_sync(self) -> int:
        return len(self.outbox)

    # Submissions ---------------------------------------------------------------------------
    def submit(self, path: Path, label: str) -> Any:
        """Sent now when the server answers; kept in the outbox (:data:`QUEUED`) when not.
        A photo that fails the checks is refused here, before anything is queued."""
        photo = check_photo(path.read_bytes(), self.settings)
        try:
            self.sync()
            return self._send_submission(photo.data, photo_name(path), photo.content_type, label)
        except ServerUnreachable:
            self.outbox.add(photo.data, photo.sha256, photo.extension, photo_name(path), label)
            return QUEUED

    def _send_submission(self, data: bytes, name: str, content_type: str, label: str) -> Any:
        from core.loop.submissions import Submission

        answer = self._request(
            "POST",
            "/submissions",
            files={"file": (name, data, content_type)},
            data={"label": label, "submitter": CLIENT},
        )
        return Submission.from_dict(answer)

    def sync(self) -> int:
        """Send the waiting submissions in order; stop at the first that cannot reach the
        server (it stays queued). One the server refuses for good (4xx) is dropped and logged:
        sending it again could never succeed."""
        sent = 0
        for entry in self.outbox.entries():
            content_type = _TYPE_BY_EXTENSION[Path(entry.file).suffix]
            try:
                self._send_submission(
                    self.outbox.photo(entry), entry.filename, content_type, entry.label
                )
            except ServerUnreachable:
                break
            except ClassifiError as exc:
                log.warning("the server refused queued submission %s: %s", entry.filename, exc)
            self.outbox.remove(entry)
            sent += 1
        return sent

    # Admin ---------------------------------------------------------------------------------
    def needs_admin_password_choice(self) -> bool:
        return False  # the server's token exists from its first start

    def choose_admin_password(self, password: str) -> None:
        raise AuthError("In remote mode the edge server's admin token is used, not a password.")

    def sign_in(self, secret: str) -> None:
        self.admin_token = secret.strip()
        try:
            self._request("GET", "/admin/submissions?status=pending&limit=1", admin=True)
        except AuthError:
            self.admin_token = None
            raise
        self.admin_signed_in = True

    def pending(self) -> list[PendingPhoto]:
        from core.loop.review import PendingPhoto

        pending: list[PendingPhoto] = []
        while True:
            path = f"/admin/submissions?limit={PAGE_SIZE}&offset={len(pending)}"
            page = self._request("GET", path, admin=True)["submissions"]
            pending += [PendingPhoto.from_dict(item) for item in page]
            if len(page) < PAGE_SIZE:
                return pending

    def submission_image(self, photo_id: int) -> bytes:
        if not self.admin_token:
            raise AuthError("Sign in as admin first (Tools > Review submissions).")
        try:
            response = self._http.get(
                f"{self.url}/admin/submissions/{photo_id}/image",
                headers={"Authorization": f"Bearer {self.admin_token}"},
                timeout=REQUEST_TIMEOUT_S,
            )
        except requests.RequestException as exc:
            raise ServerUnreachable(
                f"The edge server at {self.url} does not answer: {exc}"
            ) from None
        if response.status_code == 404:
            raise NotFound(f"No photo with id {photo_id} on the server.")
        if not response.ok:
            raise ServerUnreachable(f"The server failed to send photo {photo_id}.")
        return response.content

    def review(self, photo_ids: list[int], action: str, label: str | None) -> list[ReviewDecision]:
        from core.loop.review import ReviewDecision

        body = {"ids": photo_ids, "action": action, "label": label}
        answer = self._request("POST", "/admin/submissions/review", admin=True, json=body)
        return [ReviewDecision.from_dict(item) for item in answer["decisions"]]

    def undo_review(self, count: int) -> list[ReviewDecision]:
        from core.loop.review import ReviewDecision

        return [
            ReviewDecision.from_dict(self._request("POST", "/admin/submissions/undo", admin=True))
            for _ in range(count)
        ]

    def audit_log(self, limit: int = 500) -> list[dict[str, Any]]:
        return list(self._request("GET", f"/admin/audit?limit={limit}", admin=True)["entries"])
