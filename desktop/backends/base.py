"""What the windows call: the product's use cases (a :class:`~core.app.ProductApi`) plus what
only the desktop needs: a description for the status bar, the admin sign-in, retrain
requests, and submissions waiting to be sent.

Every method may block (database, network, a model load): call them through ``run_task``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar, Literal

from core.app import ProductApi
from core.config import Settings
from core.errors import AuthError, ClassifiError
from core.wire import (
    AuditRecord,
    LabelIssue,
    ModelSummary,
    PendingPhoto,
    Prediction,
    RetrainOutcome,
    ReviewAction,
    ReviewDecision,
    SimilarPhoto,
    Submission,
)

CLIENT = "desktop"  # the usage counters' client and the submissions' submitter
LOCAL, REMOTE = "local", "remote"
Queued = Literal["queued"]
QUEUED: Queued = "queued"  # what submit() answers when the submission waits to be sent


class Backend(ABC):
    """The product's use cases on ``api`` (in-process or over HTTP), for the windows."""

    mode: ClassVar[str]

    def __init__(self, settings: Settings, api: ProductApi) -> None:
        self.settings = settings
        self.api = api
        self.admin_signed_in = False

    @abstractmethod
    def describe(self) -> str:
        """A short text for the status bar, e.g. "Local" or "Remote: http://…"."""

    # --- Classify and submit (open to every user) --------------------------------------------
    def champion(self) -> ModelSummary | None:
        """The current champion, or None when no model has been promoted yet."""
        return self.api.champion()

    def classify(self, photos: Sequence[bytes]) -> list[Prediction | ClassifiError]:
        """A prediction for each good photo, the reason for each bad one, in order."""
        return self.api.classify(photos)

    def submit(self, data: bytes, label: str, *, source: str) -> Submission | Queued:
        """Submit a photo (``source`` is its path) with ``label`` for review."""
        return self.api.submit(data, label, source=source, submitted_by=CLIENT)

    def record_usage(self, event: str, count: int = 1) -> None:
        """Count a usage event (session, photos_classified, submissions, reviews)."""
        self.api.record_usage(CLIENT, event, count)

    def usage(self) -> dict[str, int]:
        """The desktop's usage counts by event."""
        return self.api.usage(CLIENT)

    def waiting_to_sync(self) -> int:
        """How many submissions wait to be sent (none unless a server is unreachable)."""
        return 0

    def sync(self) -> int:
        """Send what waits; how many were delivered."""
        return 0

    # --- Admin (sign in first) ---------------------------------------------------------------
    @abstractmethod
    def needs_admin_password_choice(self) -> bool:
        """True on first use in local mode: no admin password has been chosen yet."""

    @abstractmethod
    def choose_admin_password(self, password: str) -> None:
        """Store the first admin password (local mode)."""

    @abstractmethod
    def sign_in(self, secret: str) -> None:
        """Check the admin password (local) or token (remote); ``AuthError`` if wrong."""

    def check_admin(self) -> None:
        if not self.admin_signed_in:
            raise AuthError("Sign in as admin first (Tools > Review submissions).")

    def pending(self) -> list[PendingPhoto]:
        """Pending submissions, most useful first."""
        self.check_admin()
        return self.api.pending()

    def photo_image(self, photo_id: int) -> tuple[bytes, str]:
        """A submitted photo's bytes and content type."""
        self.check_admin()
        return self.api.photo_image(photo_id)

    def review(
        self, photo_ids: Sequence[int], action: ReviewAction, label: str | None = None
    ) -> list[ReviewDecision]:
        """Approve (with ``label``, or the proposed one) or reject photos, all or none."""
        self.check_admin()
        return self.api.review(photo_ids, action, label)

    def undo(self, count: int = 1) -> list[ReviewDecision]:
        """Undo the admin's last ``count`` review decisions (one bulk action)."""
        self.check_admin()
        return self.api.undo(count)

    def audit_log(self, limit: int = 500) -> list[AuditRecord]:
        """The newest audit entries first."""
        self.check_admin()
        return self.api.audit_log(limit)

    def similar_pending(self, photo_id: int, limit: int = 20) -> list[SimilarPhoto]:
        """The pending photos nearest to a pending one, nearest first."""
        self.check_admin()
        return self.api.similar(photo_id, limit=limit, pending_only=True)

    def audit_labels(self) -> list[LabelIssue]:
        """Training photos whose label looks wrong, most suspicious first."""
        self.check_admin()
        return self.api.audit_labels()

    def relabel(self, photo_id: int, label: str) -> ReviewDecision:
        self.check_admin()
        return self.api.relabel(photo_id, label)

    def remove_from_training(self, photo_id: int) -> ReviewDecision:
        self.check_admin()
        return self.api.remove_from_training(photo_id)

    def explain(self, data: bytes) -> Prediction:
        """A photo's prediction with its heatmap (a PNG, base64)."""
        return self.api.explain(data)

    def versions(self) -> list[ModelSummary]:
        """Every model version, newest first (an edge server shows them to admins only)."""
        return self.api.versions()

    def promote(self, version: int) -> ModelSummary:
        self.check_admin()
        return self.api.promote(version)

    def rollback(self) -> ModelSummary:
        self.check_admin()
        return self.api.rollback()

    def jobs_run_here(self) -> bool:
        """Whether retrains run in a child process of this app (local mode with no worker
        serving the queue) rather than on a worker (:meth:`retrain`)."""
        return False

    @abstractmethod
    def retrain(self) -> str:
        """Ask the workers to retrain now; the task id."""

    @abstractmethod
    def retrain_result(self, task_id: str) -> RetrainOutcome | None:
        """The retrain's outcome, or None while it waits or runs; ``TaskFailed`` if it failed."""


def describe_submission(answer: Submission | Queued) -> str:
    """One line for the user about what became of a submission."""
    if not isinstance(answer, Submission):
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
