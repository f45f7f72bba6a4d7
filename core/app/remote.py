"""The product's use cases over HTTP to an edge server: :class:`RemoteApp`.

The desktop's remote mode calls it exactly as its local mode calls :class:`~core.app.App`:
both are a :class:`~core.app.ProductApi`, and one contract test suite runs on both. Answers
are read back into the wire models, and an error answer raises the very class the server
raised, found in the one table of :mod:`core.errors`. Free of torch, SQLAlchemy and Qt: a
thin client needs only requests and pydantic.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import PurePath
from typing import Any, TypeVar

import requests
from prometheus_client.parser import text_string_to_metric_families

from core.errors import (
    BadRequest,
    ClassifiError,
    ModelLoading,
    NoChampion,
    ServerError,
    ServerUnreachable,
    rebuild_error,
)
from core.wire import (
    AuditRecord,
    LabelIssue,
    ModelSummary,
    PairedDevice,
    PairingRequest,
    PendingPhoto,
    Prediction,
    ReviewAction,
    ReviewDecision,
    SimilarPhoto,
    Submission,
    TaskState,
)

T = TypeVar("T")

REQUEST_TIMEOUT_S = 60.0
BATCH_FILES = 16  # photos per /predict/batch request, below the server's default cap of 32
PAGE_SIZE = 500  # the server's largest page of pending submissions or audit entries
LOADING_RETRY_S = 0.5  # how often a waiting classification asks again while the model loads
#: The client the edge server counts every ``POST /usage`` report under.
USAGE_CLIENT = "desktop"
USAGE_METRIC = "classifi_client_events"


class RemoteApp:
    """An edge server at ``url``. ``api_key`` opens the prediction, submission and usage
    routes when the server asks for one; ``admin_token`` opens the admin routes (it may be
    set later, e.g. once the user has typed it). Like :class:`~core.app.App`, it waits
    while the server's model loads unless built with ``wait_for_model=False``."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        admin_token: str | None = None,
        timeout: float = REQUEST_TIMEOUT_S,
        *,
        wait_for_model: bool = True,
    ) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.admin_token = admin_token
        self.timeout = timeout
        self.wait_for_model = wait_for_model
        self._http = requests.Session()

    def close(self) -> None:
        """Close the kept-alive connections (a later call opens new ones)."""
        self._http.close()

    # --- HTTP ------------------------------------------------------------------------------
    def _send(self, method: str, path: str, *, admin: bool = False, **kwargs: Any) -> Any:
        """The answer to a request; the server's own error class for an error answer."""
        headers = {}
        if admin and self.admin_token:
            headers["Authorization"] = f"Bearer {self.admin_token}"
        elif not admin and self.api_key:
            headers["X-API-Key"] = self.api_key
        try:
            response = self._http.request(
                method, self.url + path, headers=headers, timeout=self.timeout, **kwargs
            )
        except requests.RequestException as exc:
            raise ServerUnreachable(
                f"The edge server at {self.url} does not answer ({type(exc).__name__}). "
                "Check that it runs and that its URL is right."
            ) from None
        if not response.ok:
            raise self._error(response, f"{method} {path}")
        return response

    def _error(self, response: requests.Response, request: str) -> ClassifiError:
        try:
            error = response.json()["error"]
            code, message = str(error["code"]), str(error["message"])
        except (ValueError, KeyError, TypeError):  # not the server's error shape (a proxy?)
            code = "http_error"
            message = (
                f"The edge server at {self.url} answered HTTP {response.status_code} to {request}."
            )
        return rebuild_error(code, response.status_code, message)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise ServerError(
                f"The edge server at {self.url} answered {method} {path} with something "
                "other than JSON: is the URL that of a ClassifiImage edge server?"
            ) from None

    def _waiting(self, call: Callable[[], T]) -> T:
        """``call()``, asked again while the server's model is still loading (if waiting)."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return call()
            except ModelLoading:
                if not self.wait_for_model or time.monotonic() > deadline:
                    raise
                time.sleep(LOADING_RETRY_S)

    # --- Classify --------------------------------------------------------------------------
    def champion(self) -> ModelSummary | None:
        """The champion the server serves (it follows a promotion within its refresh
        interval), or None before the first model."""
        try:
            return ModelSummary.from_dict(self._json("GET", "/model"))
        except NoChampion:
            return None

    def classify(self, photos: Sequence[bytes]) -> list[Prediction | ClassifiError]:
        """A prediction for each good photo, the reason for each bad one, in order, sent
        :data:`BATCH_FILES` at a time. The server judges each photo by its content."""
        answers: list[Prediction | ClassifiError] = []
        for start in range(0, len(photos), BATCH_FILES):
            files = [
                ("files", (f"photo{start + index}", data))
                for index, data in enumerate(photos[start : start + BATCH_FILES])
            ]
            answer = self._waiting(partial(self._json, "POST", "/predict/batch", files=files))
            answers += [_prediction_or_error(result) for result in answer["results"]]
        return answers

    def explain(self, data: bytes) -> Prediction:
        upload = {"file": ("photo", data)}
        call = partial(self._json, "POST", "/predict", params={"explain": 1}, files=upload)
        return Prediction.from_dict(self._waiting(call))

    # --- Submissions and review ------------------------------------------------------------
    def submit(
        self, data: bytes, label: str, *, source: str, submitted_by: str | None = None
    ) -> Submission:
        """Store a photo with a proposed label as pending; ``source`` names its file."""
        form = {"label": label, "submitter": submitted_by or ""}
        upload = {"file": (PurePath(source).name or "photo", data)}
        return Submission.from_dict(self._json("POST", "/submissions", files=upload, data=form))

    def pending(self, *, limit: int | None = None, offset: int = 0) -> list[PendingPhoto]:
        """Pending submissions, most useful first, read a page of :data:`PAGE_SIZE` at a time."""
        pending: list[PendingPhoto] = []
        while limit is None or len(pending) < limit:
            size = PAGE_SIZE if limit is None else min(PAGE_SIZE, limit - len(pending))
            params = {"limit": size, "offset": offset + len(pending)}
            page = self._json("GET", "/admin/submissions", admin=True, params=params)
            pending += [PendingPhoto.from_dict(item) for item in page["submissions"]]
            if len(page["submissions"]) < size:
                break
        return pending

    def photo_image(self, photo_id: int) -> tuple[bytes, str]:
        response = self._send("GET", f"/admin/submissions/{photo_id}/image", admin=True)
        return response.content, response.headers.get("Content-Type", "application/octet-stream")

    def review(
        self, photo_ids: Sequence[int], action: ReviewAction | str, label: str | None = None
    ) -> list[ReviewDecision]:
        body = {"ids": list(photo_ids), "action": str(action), "label": label}
        answer = self._json("POST", "/admin/submissions/review", admin=True, json=body)
        return [ReviewDecision.from_dict(item) for item in answer["decisions"]]

    def undo(self, count: int = 1) -> list[ReviewDecision]:
        return [
            ReviewDecision.from_dict(self._json("POST", "/admin/submissions/undo", admin=True))
            for _ in range(count)
        ]

    def audit_log(self, limit: int = 500) -> list[AuditRecord]:
        answer = self._json("GET", "/admin/audit", admin=True, params={"limit": limit})
        return [AuditRecord.from_dict(item) for item in answer["entries"]]

    def similar(
        self, photo_id: int, *, limit: int = 20, pending_only: bool = False
    ) -> list[SimilarPhoto]:
        params = {"limit": limit, "pending_only": str(pending_only).lower()}
        answer = self._json("GET", f"/admin/photos/{photo_id}/similar", admin=True, params=params)
        return [SimilarPhoto.from_dict(item) for item in answer["similar"]]

    # --- Label audit -------------------------------------------------------------------------
    def audit_labels(self) -> list[LabelIssue]:
        answer = self._json("GET", "/admin/label-audit", admin=True)
        return [LabelIssue.from_dict(item) for item in answer["issues"]]

    def relabel(self, photo_id: int, label: str) -> ReviewDecision:
        body = {"action": "relabel", "label": label}
        answer = self._json("POST", f"/admin/label-audit/{photo_id}", admin=True, json=body)
        return ReviewDecision.from_dict(answer)

    def remove_from_training(self, photo_id: int) -> ReviewDecision:
        body = {"action": "remove"}
        answer = self._json("POST", f"/admin/label-audit/{photo_id}", admin=True, json=body)
        return ReviewDecision.from_dict(answer)

    # --- Models ----------------------------------------------------------------------------
    def versions(self) -> list[ModelSummary]:
        answer = self._json("GET", "/models", admin=True)
        return [ModelSummary.from_dict(item) for item in answer["models"]]

    def promote(self, version: int, *, reason: str | None = None) -> ModelSummary:
        body = {"reason": reason} if reason else None
        answer = self._json("POST", f"/admin/models/{version}/promote", admin=True, json=body)
        return ModelSummary.from_dict(answer)

    def rollback(self) -> ModelSummary:
        return ModelSummary.from_dict(self._json("POST", "/admin/models/rollback", admin=True))

    def enqueue_retrain(self) -> str:
        """Ask the server's workers to retrain now; the task id for :meth:`retrain_state`."""
        return str(self._json("POST", "/admin/retrain", admin=True)["task_id"])

    def retrain_state(self, task_id: str) -> TaskState:
        return TaskState.from_dict(self._json("GET", f"/admin/retrain/{task_id}", admin=True))

    # --- Devices ---------------------------------------------------------------------------
    def pair(self, code: str, device: str) -> PairedDevice:
        """Trade a pairing code (``classifi keys pair`` on the server) for a device key, which
        this client then sends; AuthError for a wrong, used or expired code."""
        body = PairingRequest(code=code, device=device).to_dict()
        paired = PairedDevice.from_dict(self._json("POST", "/pair", json=body))
        self.api_key = paired.key
        return paired

    # --- Usage -----------------------------------------------------------------------------
    def record_usage(self, client: str, event: str, count: int = 1) -> None:
        if client != USAGE_CLIENT:
            raise BadRequest(
                f"The edge server counts usage for the {USAGE_CLIENT!r} client only, "
                f"not {client!r}."
            )
        self._json("POST", "/usage", json={"event": event, "count": count})

    def usage(self, client: str) -> dict[str, int]:
        """A client's counts by event, read from the server's Prometheus metrics."""
        metrics = self._send("GET", "/metrics").text
        return {
            sample.labels["event"]: int(sample.value)
            for family in text_string_to_metric_families(metrics)
            if family.name == USAGE_METRIC
            for sample in family.samples
            if sample.name.endswith("_total") and sample.labels.get("client") == client
        }


def _prediction_or_error(result: dict[str, Any]) -> Prediction | ClassifiError:
    """One item of a batch answer: a prediction, or the error that refused that photo."""
    error = result.get("error")
    if error is None:
        return Prediction.from_dict(result)
    # Inline errors carry no status: a photo's own refusal is a client error (400).
    return rebuild_error(str(error["code"]), 400, str(error["message"]))
