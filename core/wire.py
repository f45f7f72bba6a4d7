"""The data that crosses HTTP, declared once.

The edge server answers with these models, the remote desktop reads its answers back into
them, and the OpenAPI document's schemas are generated from them, so the three cannot
disagree. Free of torch and SQLAlchemy: a thin client imports this module and nothing heavy.
Field names are the Python ones; an alias gives the JSON name where the seed fixed another
one (``prediction`` for a prediction's label, ``id`` for a photo's id).
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    computed_field,
    field_serializer,
    field_validator,
)


class PhotoStatus(enum.StrEnum):
    PENDING = "pending"  # submitted, awaiting review, in pending_validation/
    VALIDATED = "validated"  # approved, in corrected_data/, not yet trained on
    REJECTED = "rejected"  # kept out of training
    TRAINED = "trained"  # in raw/<label>/, part of the training set


class ModelState(enum.StrEnum):
    CANDIDATE = "candidate"
    CHAMPION = "champion"
    ARCHIVED = "archived"
    REFUSED = "refused"  # failed the promotion gate


class ReviewAction(enum.StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


def _in_utc(moment: datetime) -> datetime:
    # The registry keeps UTC; SQLite gives it back without its zone. On the wire a time says
    # its zone (RFC 3339, as the schema's "date-time" requires).
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


#: A moment in UTC, written with its zone.
UtcDateTime = Annotated[datetime, AfterValidator(_in_utc)]


class WireModel(BaseModel):
    """Immutable, JSON-ready, read back with :meth:`from_dict`."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    def to_dict(self) -> dict[str, Any]:
        """The JSON object the edge server answers with."""
        return self.model_dump(mode="json", by_alias=True)

    @classmethod
    def from_dict(cls, item: Any) -> Self:
        """The inverse of :meth:`to_dict`, for clients of the edge server."""
        return cls.model_validate(item)


class Prediction(WireModel):
    """One photo's classification (the seed's ``prediction`` field is the label)."""

    label: str = Field(alias="prediction")
    confidence: float = Field(description="Calibrated probability of the predicted label.")
    probabilities: dict[str, float]
    model_version: int
    backbone: str
    unsure: bool = Field(
        description="The confidence is below the model's unsure threshold: validation answers "
        "that confident are right less often than the target (99%)."
    )
    out_of_distribution: bool = Field(
        description="The photo is unlike every training photo (not a photo of any of the "
        "model's labels): its label means little."
    )
    heatmap: str | None = Field(
        default=None,
        description="Asked for (explain): a PNG, base64, of the photo with the evidence for "
        "the predicted label laid over it.",
    )


class Duplicate(WireModel):
    """The stored photo that a submission duplicates."""

    photo_id: int
    status: PhotoStatus
    kind: Literal["exact", "near"]
    distance: float = Field(description="Cosine distance; 0 for an exact duplicate.")

    @field_serializer("distance")
    def _rounded(self, distance: float) -> float:
        return round(distance, 6)


class SimilarPhoto(WireModel):
    """A stored photo like another, by the cosine distance of their embeddings."""

    photo_id: int
    status: PhotoStatus
    distance: float = Field(description="Cosine distance between the two photos' embeddings.")

    @field_serializer("distance")
    def _rounded(self, distance: float) -> float:
        return round(distance, 6)


class Submission(WireModel):
    """What became of a submitted photo."""

    photo_id: int = Field(alias="id")
    status: PhotoStatus
    stored: bool = Field(description="False for an exact duplicate: the existing photo stands.")
    duplicate: Duplicate | None = Field(
        description="The exact duplicate, or the near one (then the photo is stored, flagged)."
    )
    prediction: str | None
    confidence: float | None
    model_version: int | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def duplicate_of(self) -> int | None:
        return self.duplicate.photo_id if self.duplicate else None


class PendingPhoto(WireModel):
    """One submission awaiting review, with what the model thought of it."""

    id: int
    object_key: str
    proposed_label: str | None
    prediction: str | None
    confidence: float | None
    status: PhotoStatus
    submitted_by: str | None
    submitted_at: UtcDateTime
    near_duplicate_of: int | None
    near_duplicate_distance: float | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def disagrees(self) -> bool:
        """The model predicted another label than the one proposed."""
        return self.prediction is not None and self.prediction != self.proposed_label


DELETED = "deleted"  # a decision's status when the photo was deleted on rejection


class ReviewDecision(WireModel):
    """One review decision (approve, reject or undo) and where it left the photo."""

    photo_id: int = Field(alias="id")
    action: str = Field(description="review.approve, review.reject or review.undo")
    old_label: str | None
    new_label: str | None
    status: PhotoStatus | None = Field(description=f"'{DELETED}' when the photo was deleted.")
    audit_id: int

    @field_validator("status", mode="before")
    @classmethod
    def _deleted_is_none(cls, status: Any) -> Any:
        return None if status == DELETED else status

    @field_serializer("status")
    def _none_is_deleted(self, status: PhotoStatus | None) -> str:
        return str(status) if status is not None else DELETED


class LabelIssue(WireModel):
    """A training photo whose label looks wrong (cleanlab's label-issue finder on
    out-of-fold probabilities), most suspicious first in a list."""

    photo_id: int
    url_source: str
    label: str = Field(description="The label it trains with now.")
    suggested_label: str = Field(description="The label the out-of-fold model gives it.")
    score: float = Field(
        description="cleanlab's label quality, from 0 (surely wrong) to 1: the lower, the "
        "more suspicious."
    )


class AuditRecord(WireModel):
    """One entry of the audit log."""

    at: UtcDateTime
    actor: str
    action: str
    photo_id: int | None
    model_version_id: int | None
    old_label: str | None
    new_label: str | None


class ModelSummary(WireModel):
    """A registered model version as every front end shows it."""

    version: int
    state: ModelState
    backbone: str
    labels: list[str]
    metrics: dict[str, Any]
    object_key: str
    created_at: UtcDateTime
    promoted_at: UtcDateTime | None


class ChampionPeriod(WireModel):
    """When a version was champion, who made it so and why."""

    version: int
    started_at: UtcDateTime
    ended_at: UtcDateTime | None
    reason: str
    actor: str


class GateDecision(WireModel):
    """The promotion gate's verdict on a candidate."""

    candidate_version: int
    promoted: bool
    reason: str
    floor: float
    holdout_size: int
    candidate_accuracy: float | None
    champion_version: int | None = None
    champion_accuracy: float | None = None


class RetrainOutcome(WireModel):
    """The answer of one retrain check (``classifi retrain-check --json`` prints it)."""

    due: bool
    new_validated: int
    candidate_version: int | None
    promoted: bool
    reason: str
    run_id: int | None = None
    gate: GateDecision | None = None


class TaskState(WireModel):
    """A queued job (a retrain): pending (waiting, running or unknown), finished or failed."""

    task_id: str
    status: Literal["pending", "finished", "failed"]
    result: RetrainOutcome | None = None
    error: str | None = None


class UsageEvent(enum.StrEnum):
    """The fixed vocabulary of usage events: no client can add a metric series."""

    SESSION = "session"
    PHOTOS_CLASSIFIED = "photos_classified"
    SUBMISSIONS = "submissions"
    REVIEWS = "reviews"


MAX_USAGE_COUNT = 10_000


class Usage(WireModel):
    """A usage report: ``count`` more of ``event``."""

    event: UsageEvent
    count: int = Field(default=1, ge=1, le=MAX_USAGE_COUNT)


class PairingRequest(WireModel):
    """A device trades a pairing code (``classifi keys pair``) for a device key of its own."""

    code: str = Field(
        min_length=1, max_length=32, description="The code the server showed, e.g. K7QM-X3PD."
    )
    device: str = Field(
        min_length=1,
        max_length=48,
        description="What the device calls itself: the key's name if the code was made without one.",
    )


class PairedDevice(WireModel):
    """The device key a pairing gave, shown this once: send it as ``X-API-Key``."""

    device: str
    key: str


WIRE_MODELS: tuple[type[WireModel], ...] = (
    Prediction,
    Duplicate,
    SimilarPhoto,
    Submission,
    PendingPhoto,
    ReviewDecision,
    LabelIssue,
    SimilarPhoto,
    AuditRecord,
    ModelSummary,
    ChampionPeriod,
    GateDecision,
    RetrainOutcome,
    TaskState,
    Usage,
    PairingRequest,
    PairedDevice,
)
