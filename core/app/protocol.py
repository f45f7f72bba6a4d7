"""The use cases the desktop calls, behind one protocol with two adapters: the in-process
:class:`~core.app.App` (local mode) and :class:`~core.app.remote.RemoteApp`, the same calls
over HTTP to an edge server (remote mode). One contract test suite runs on both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from core.errors import ClassifiError
from core.wire import (
    AuditRecord,
    LabelIssue,
    ModelSummary,
    PendingPhoto,
    Prediction,
    ReviewAction,
    ReviewDecision,
    SimilarPhoto,
    Submission,
)


class ProductApi(Protocol):
    def champion(self) -> ModelSummary | None:
        """The current champion, or None before the first model."""
        ...

    def classify(self, photos: Sequence[bytes]) -> list[Prediction | ClassifiError]:
        """A prediction for each good photo, the reason for each bad one, in order."""
        ...

    def explain(self, data: bytes) -> Prediction:
        """One photo's prediction with its heatmap (a PNG, base64)."""
        ...

    def submit(
        self, data: bytes, label: str, *, source: str, submitted_by: str | None = None
    ) -> Submission:
        """Store a photo with a proposed label as pending."""
        ...

    def pending(self, *, limit: int | None = None, offset: int = 0) -> list[PendingPhoto]:
        """Pending submissions, most useful first (admin)."""
        ...

    def photo_image(self, photo_id: int) -> tuple[bytes, str]:
        """A photo's bytes and content type (admin)."""
        ...

    def review(
        self, photo_ids: Sequence[int], action: ReviewAction | str, label: str | None = None
    ) -> list[ReviewDecision]:
        """Approve or reject pending photos, all or none (admin)."""
        ...

    def undo(self, count: int = 1) -> list[ReviewDecision]:
        """Undo the last ``count`` review decisions (admin)."""
        ...

    def audit_log(self, limit: int = 500) -> list[AuditRecord]:
        """The newest audit entries first (admin)."""
        ...

    def similar(
        self, photo_id: int, *, limit: int = 20, pending_only: bool = False
    ) -> list[SimilarPhoto]:
        """The photos most like one, nearest first; only pending ones if asked (admin)."""
        ...

    def audit_labels(self) -> list[LabelIssue]:
        """Training photos whose label looks wrong, most suspicious first (admin)."""
        ...

    def relabel(self, photo_id: int, label: str) -> ReviewDecision:
        """Give a training photo another label (admin)."""
        ...

    def remove_from_training(self, photo_id: int) -> ReviewDecision:
        """Take a training photo out of the training set (admin)."""
        ...

    def versions(self) -> list[ModelSummary]:
        """Every model version, newest first (admin)."""
        ...

    def promote(self, version: int, *, reason: str | None = None) -> ModelSummary:
        """Make ``version`` the champion (admin)."""
        ...

    def rollback(self) -> ModelSummary:
        """Make the previous champion the champion again (admin)."""
        ...

    def record_usage(self, client: str, event: str, count: int = 1) -> None:
        """Count a usage event of a client (e.g. the desktop)."""
        ...

    def usage(self, client: str) -> dict[str, int]:
        """A client's usage counts by event."""
        ...
