"""The application: every use case a front end needs, on the stores named by one Settings.

The CLI, the edge server's routes, the worker's tasks and the desktop's local mode all call
an :class:`App`; none of them opens a registry, a store or a predictor itself. The app opens
each on first use, once, under a lock (first use may be on any thread), and closes them.

An app acts for one ``actor`` (the OS user for the CLI, ``edge-admin`` for the server's
admin routes, ``desktop-admin`` for the desktop): every decision it makes is audited under
that name. Who may call what is the front end's business (the edge server's tokens, the
desktop's admin password); the app trusts its caller.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

from core import auth, vectors
from core.config import Settings, rate_limits
from core.errors import BadRequest, ClassifiError, InvalidImage, LockHeld, NoChampion
from core.imaging import CheckedPhoto, check_photo
from core.locks import LockHolder, lock_holder, maintenance_lock
from core.registry import Registry
from core.store import ObjectStore, open_store
from core.usage import record_usage, usage_counts
from core.wire import (
    AuditRecord,
    ChampionPeriod,
    Duplicate,
    LabelIssue,
    ModelSummary,
    PairedDevice,
    PairingRequest,
    PendingPhoto,
    Prediction,
    RetrainOutcome,
    ReviewAction,
    ReviewDecision,
    SimilarPhoto,
    Submission,
)

if TYPE_CHECKING:
    from pathlib import Path

    from PIL import Image

    from core.app.getting_started import ImportOutcome, ImportPreview
    from core.backup import BackupReport
    from core.ingest import IngestReport, Listing, ProgressCallback
    from core.loop.doctor import DoctorReport
    from core.loop.monitoring import LoopSnapshot
    from core.loop.reembed import PhotoRef, ReembedPlan, ReembedReport
    from core.model.exports import ExportedModel
    from core.model.predictor import Predictor
    from core.model.runtimes.files import Export
    from core.model.training import Progress, TrainingResult

T = TypeVar("T")


class _Lazy:
    """Values built on first use, once each, under one lock."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._values: dict[str, Any] = {}

    def get(self, name: str, build: Callable[[], T]) -> T:
        with self._lock:
            if name not in self._values:
                self._values[name] = build()
            value: T = self._values[name]
            return value

    def built(self, name: str) -> Any | None:
        """The value if it has been built, without building it."""
        with self._lock:
            return self._values.get(name)

    def pop_all(self) -> dict[str, Any]:
        with self._lock:
            values, self._values = self._values, {}
            return values


class App:
    """The product's use cases on one installation (see the module's docstring)."""

    def __init__(self, settings: Settings, *, actor: str, wait_for_model: bool = True) -> None:
        self.settings = settings
        self.actor = actor
        #: False in request handlers: a model still loading raises ModelLoading (never waited
        #: for) and a submission meanwhile is stored without the model's opinion.
        self.wait_for_model = wait_for_model
        self._opened = _Lazy()
        self._kept = _Lazy()  # what closing the stores must not reset (the sign-in count)

    # --- The stores, opened on first use ---------------------------------------------------
    @property
    def registry(self) -> Registry:
        # Opening it runs the migrations: first use is on a worker thread, never a UI one.
        def build() -> Registry:
            registry = Registry(self.settings.registry_url)
            vectors.choose_index(registry, self.settings.vector_index)
            return registry

        return self._opened.get("registry", build)

    @property
    def store(self) -> ObjectStore:
        return self._opened.get("store", lambda: open_store(self.settings))

    @property
    def predictor(self) -> Predictor:
        def build() -> Predictor:
            from core.model.predictor import Predictor  # the model stack loads only when used

            return Predictor(self.settings, self.registry, self.store)

        return self._opened.get("predictor", build)

    def close(self) -> None:
        """Release the database connections; the app reopens what a later call needs."""
        registry = self._opened.pop_all().get("registry")
        if registry is not None:
            vectors.close_index(registry)
            registry.dispose()

    def __enter__(self) -> App:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @contextmanager
    def maintenance(self, purpose: str) -> Iterator[LockHolder]:
        """Hold the maintenance lock (one retrain, repair or re-embed at a time, anywhere)."""
        with maintenance_lock(self.registry, purpose) as holder:
            yield holder

    def lock_holder(self) -> LockHolder | None:
        return lock_holder(self.registry)

    @property
    def vector_index(self) -> vectors.VectorIndex:
        """The similarity index of the registry (opened on first use)."""
        return vectors.index_of(self.registry)

    # --- Classify ------------------------------------------------------------------------
    def check_photo(self, data: bytes) -> CheckedPhoto:
        """``data`` checked and decoded under the configured limits (InvalidImage if not)."""
        return check_photo(data, self.settings)

    def load_model(self) -> ModelSummary:
        """Load the champion now (at start, or on a worker thread); NoChampion if none."""
        return self.predictor.ensure_loaded().info

    def served_model(self) -> ModelSummary:
        """The model classifying now, after a cheap check for a newer champion (its load
        starts in the background). Never waits: ModelLoading or NoChampion instead."""
        self.predictor.refresh()
        return self.predictor.current().info

    def champion(self) -> ModelSummary | None:
        """The registry's champion (whether or not this process has loaded it)."""
        from core.model.versions import champion, summary_of

        row = champion(self.registry)
        return None if row is None else summary_of(row)

    def classify_images(self, images: Sequence[Image.Image]) -> list[Prediction]:
        """One prediction per checked image, in batched passes."""
        self.predictor.refresh()
        return self.predictor.predict(images, wait=self.wait_for_model)

    def explain(self, data: bytes) -> Prediction:
        """One photo's prediction with its heatmap (a PNG, base64): where the model found
        its label, from the same backbone pass."""
        image = self.check_photo(data).image
        self.predictor.refresh()
        (prediction,) = self.predictor.explain([image], wait=self.wait_for_model)
        return prediction

    def classify(self, photos: Sequence[bytes]) -> list[Prediction | ClassifiError]:
        """Classify many photos: a prediction for each good one (all in batched passes), the
        reason for each bad one, in the order given. One bad photo spoils no other."""
        refused: dict[int, ClassifiError] = {}
        images: list[Image.Image] = []
        for index, data in enumerate(photos):
            try:
                images.append(self.check_photo(data).image)
            except InvalidImage as exc:
                refused[index] = exc
        predictions = iter(self.classify_images(images) if images else [])
        return [refused.get(index) or next(predictions) for index in range(len(photos))]

    # --- Submissions and review ------------------------------------------------------------
    def submit(
        self, data: bytes, label: str, *, source: str, submitted_by: str | None = None
    ) -> Submission:
        """Store a photo with a proposed label as pending (exact duplicates are not stored)."""
        from core.loop.submissions import submit_photo

        return submit_photo(
            self.settings,
            self.registry,
            self.store,
            data,
            label,
            source=source,
            submitted_by=submitted_by,
            predictor=self.predictor,
            wait_for_model=self.wait_for_model,
        )

    def exact_duplicate(self, photo: CheckedPhoto) -> Duplicate | None:
        """The stored photo with exactly these bytes, if any."""
        from core.loop.duplicates import exact_duplicate

        return exact_duplicate(self.registry, photo.sha256)

    def similar(
        self, photo_id: int, *, limit: int = 20, pending_only: bool = False
    ) -> list[SimilarPhoto]:
        """The ``limit`` photos most like ``photo_id``, nearest first (only pending ones if
        asked: the review's "select similar")."""
        from core.loop.duplicates import similar_to_photo

        return similar_to_photo(
            self.settings, self.registry, self.store, photo_id, limit, pending_only=pending_only
        )

    def pending(self, *, limit: int | None = None, offset: int = 0) -> list[PendingPhoto]:
        """Pending submissions, most useful to review first."""
        from core.loop.review import list_pending

        return list_pending(self.registry, limit=limit, offset=offset)

    def photo_image(self, photo_id: int) -> tuple[bytes, str]:
        """A registered photo's bytes and content type."""
        from core.loop.review import photo_image

        return photo_image(self.registry, self.store, photo_id)

    def review(
        self, photo_ids: Sequence[int], action: ReviewAction | str, label: str | None = None
    ) -> list[ReviewDecision]:
        """Approve (with ``label``, or the proposed one) or reject pending photos, all or none."""
        from core.loop.review import approve, reject

        if action == ReviewAction.APPROVE:
            return approve(
                self.settings, self.registry, self.store, photo_ids, actor=self.actor, label=label
            )
        if action == ReviewAction.REJECT:
            if label is not None:
                raise BadRequest("A rejection takes no label.", code="invalid_action")
            return reject(self.settings, self.registry, self.store, photo_ids, actor=self.actor)
        raise BadRequest(
            f"Unknown review action {action!r}: use 'approve' or 'reject'.", code="invalid_action"
        )

    def undo(self, count: int = 1) -> list[ReviewDecision]:
        """Undo this actor's last ``count`` review decisions, newest first."""
        from core.loop.review import undo_last

        return [
            undo_last(self.settings, self.registry, self.store, actor=self.actor)
            for _ in range(count)
        ]

    def audit_log(self, limit: int = 500) -> list[AuditRecord]:
        from core.loop.review import audit_log

        return audit_log(self.registry, limit)

    # --- Label audit -------------------------------------------------------------------------
    def audit_labels(self) -> list[LabelIssue]:
        """Training photos whose label looks wrong, most suspicious first (cleanlab)."""
        from core.loop.label_audit import audit_labels

        return audit_labels(self.settings, self.registry, self.store)

    def relabel(self, photo_id: int, label: str) -> ReviewDecision:
        """Give a training photo another label (audited)."""
        from core.loop.label_audit import relabel

        return relabel(self.settings, self.registry, self.store, photo_id, label, actor=self.actor)

    def remove_from_training(self, photo_id: int) -> ReviewDecision:
        """Take a training photo out of the training set (audited)."""
        from core.loop.label_audit import remove_from_training

        return remove_from_training(
            self.settings, self.registry, self.store, photo_id, actor=self.actor
        )

    # --- Models ----------------------------------------------------------------------------
    def versions(self) -> list[ModelSummary]:
        from core.loop.models_admin import list_models

        return list_models(self.registry)

    def champion_history(self) -> list[ChampionPeriod]:
        from core.loop.models_admin import champion_history

        return champion_history(self.registry)

    def promote(self, version: int, *, reason: str | None = None) -> ModelSummary:
        """Make ``version`` the champion; this process starts serving it in the background."""
        from core.loop.models_admin import promote

        chosen = promote(
            self.settings, self.registry, self.store, version, actor=self.actor, reason=reason
        )
        self._serve_new_champion()
        return chosen

    def rollback(self) -> ModelSummary:
        from core.loop.models_admin import rollback

        chosen = rollback(self.settings, self.registry, self.store, actor=self.actor)
        self._serve_new_champion()
        return chosen

    def _serve_new_champion(self) -> None:
        # Only a process that classifies has a model to swap: a command line that promotes
        # loads none (a predictor opened later loads the champion of that time).
        predictor: Predictor | None = self._opened.built("predictor")
        if predictor is not None:
            predictor.refresh(force=True)

    # --- Data and training -----------------------------------------------------------------
    def list_source(self, source: str) -> Listing:
        """The photos a source names (a labelled folder, a CSV manifest or ``default``)."""
        from core.ingest import read_source

        return read_source(source, self.settings)

    def ingest(self, listing: Listing, *, progress: ProgressCallback | None = None) -> IngestReport:
        from core.ingest import ingest

        return ingest(listing, self.settings, self.registry, self.store, progress=progress)

    def train(
        self,
        *,
        backbone_id: str | None = None,
        epochs: int | None = None,
        progress: Progress | None = None,
    ) -> TrainingResult:
        """Train a candidate on the training set; the first model becomes champion."""
        from core.model.training import train_model

        settings = self.settings
        if epochs is not None:
            settings = settings.model_copy(update={"epochs": epochs})
        return train_model(
            settings,
            self.registry,
            self.store,
            backbone_id=backbone_id,
            progress=progress,
            actor=self.actor,
        )

    def retrain_check(
        self, *, force: bool = False, actor: str | None = None, progress: Progress | None = None
    ) -> RetrainOutcome:
        """Retrain and gate when due, under the maintenance lock (LockHeld if it is taken).

        A check that stands down or fails is audited too, for the worker's metrics."""
        from core.loop import monitoring
        from core.loop.policy import retrain_check

        actor = actor or self.actor
        try:
            with self.maintenance("retrain"):
                return retrain_check(
                    self.settings,
                    self.registry,
                    self.store,
                    force=force,
                    actor=actor,
                    progress=progress,
                )
        except LockHeld as held:
            monitoring.record_check(self.registry, monitoring.STOOD_DOWN, actor, str(held))
            raise
        except Exception as exc:
            monitoring.record_check(
                self.registry, monitoring.FAILED, actor, f"{type(exc).__name__}: {exc}"
            )
            raise

    def loop_snapshot(self) -> LoopSnapshot:
        """The learning loop's counts and times, as the worker's metrics export them."""
        from core.loop.monitoring import loop_snapshot

        return loop_snapshot(self.registry)

    # --- Getting started ---------------------------------------------------------------------
    def preview_import(
        self, paths: Sequence[Path], *, progress: Callable[[int, int], None] | None = None
    ) -> ImportPreview:
        """What importing the label folders ``paths`` name would do (every photo is read and
        checked; nothing is stored)."""
        from core.app.getting_started import preview_import

        return preview_import(self.settings, self.registry, paths, progress=progress)

    def import_photos(
        self,
        preview: ImportPreview,
        *,
        stored: Callable[[int, int], None] | None = None,
        progress: Progress | None = None,
    ) -> ImportOutcome:
        """Store a preview's photos, save the label set and train on them, under the
        maintenance lock; this app takes the new labels."""
        from core.app.getting_started import import_photos

        with self.maintenance("import"):
            outcome = import_photos(
                self.settings,
                self.registry,
                self.store,
                preview,
                actor=self.actor,
                stored=stored,
                progress=progress,
            )
        self.settings = self.settings.model_copy(update={"labels": tuple(outcome.labels)})
        if outcome.champion:
            self._serve_new_champion()
        return outcome

    def home_labels(self) -> list[str]:
        """The labels of the home's training photos (none in a fresh home)."""
        from core.app.getting_started import home_labels

        return home_labels(self.settings, self.registry)

    def install_model(self, data: bytes) -> ModelSummary | None:
        """Make a shipped model file the champion of a home with no model yet (else None)."""
        from core.app.getting_started import install_model

        installed = install_model(self.settings, self.registry, self.store, data, actor=self.actor)
        if installed is not None:
            self._serve_new_champion()
        return installed

    def reembed(self, backbone_id: str | None = None) -> ReembedReport:
        """Fill the embedding cache of a backbone, under the maintenance lock."""
        from core.loop.reembed import reembed

        with self.maintenance("re-embed"):
            return reembed(self.settings, self.registry, self.store, backbone_id=backbone_id)

    def plan_reembed(self, backbone_id: str | None = None) -> ReembedPlan:
        """The photos a re-embed of ``backbone_id`` would embed, to split across workers."""
        from core.loop.reembed import plan_reembed

        return plan_reembed(self.settings, self.registry, self.store, backbone_id=backbone_id)

    def embed_photos(self, backbone_id: str, photos: Sequence[PhotoRef]) -> int:
        """Embed one part of a re-embed plan (no lock: a part done twice changes nothing)."""
        from core.loop.reembed import embed_photos

        return embed_photos(self.settings, self.registry, self.store, backbone_id, photos)

    def doctor(self, *, repair: bool = False) -> DoctorReport:
        """Check bucket/registry consistency; repairs hold the maintenance lock. A check
        names the lock's holder, if any: a retrain under way shows as unfinished."""
        from core.loop.doctor import check_consistency

        if not repair:
            report = check_consistency(self.settings, self.registry, self.store)
            holder = self.lock_holder()
            return replace(report, lock_holder=None if holder is None else holder.describe())
        with self.maintenance("repair"):
            return check_consistency(self.settings, self.registry, self.store, repair=True)

    def backup(
        self, destination: Path, *, progress: Callable[[str], None] | None = None
    ) -> BackupReport:
        """A consistent backup of the home (embedded stores), taken while the app runs."""
        from core.backup import backup

        return backup(self.settings, destination, progress=progress)

    def restore(self, source: Path, *, replace: bool = False) -> dict[str, Any]:
        """Put a backup back as this app's home (stop servers and workers on it first)."""
        from core.backup import restore

        self.close()
        return restore(self.settings, source, replace=replace)

    def export_model(self, out: Path, *, version: int | None = None) -> ExportedModel:
        """Write model ``version`` (default: the champion) as one ONNX file (preprocessed
        pixels in, label probabilities out) and its JSON sidecar into ``out``."""
        from core.model.exports import export_onnx_model
        from core.model.predictor import verified_artifact
        from core.model.versions import champion, get_version

        row = (
            get_version(self.registry, version) if version is not None else champion(self.registry)
        )
        if row is None:
            raise NoChampion("No model yet to export: run `classifi train`.")
        artifact = verified_artifact(self.store, row)
        name = PurePosixPath(row.object_key).stem
        return export_onnx_model(self.settings, artifact, row.id, name, out)

    def export_runtimes(self, *, backbone_id: str | None = None, out: Path | None = None) -> Export:
        """Make the exported backbone files now (torch needed), for the champion's backbone
        unless one is named; copy them into ``out`` to ship with an image or bundle."""
        from core.model.exports import export_runtime_files

        return export_runtime_files(
            self.settings, self.registry, self.store, backbone_id=backbone_id, out=out
        )

    def status(self) -> dict[str, Any]:
        from core.status import status_report

        report = status_report(self.settings, self.registry)
        holder = self.lock_holder()
        report["maintenance_lock"] = None if holder is None else holder.describe()
        report["similarity_index"] = self.vector_index.describe()
        return report

    # --- Credentials -----------------------------------------------------------------------
    def ensure_admin_token(self) -> str | None:
        """Create the edge server's admin token if there is none: the token, to show once."""
        return auth.ensure_admin_token(self.registry)

    def reset_admin_token(self) -> str:
        return auth.reset_admin_token(self.registry)

    def verify_admin_token(self, token: str | None) -> None:
        auth.verify_admin_token(self.registry, token)

    def session_key(self) -> str:
        """The key that signs the edge server's web-page sessions (shared by its workers)."""
        return auth.ensure_session_key(self.registry)

    def admin_token_fingerprint(self) -> str | None:
        """Changes when the admin token is reset (the web page's sessions follow it)."""
        return auth.admin_token_fingerprint(self.registry)

    def create_device_key(self, name: str) -> str:
        """A new key for a device (shown once; only its hash is kept)."""
        return auth.create_device_key(self.registry, name)

    def ensure_first_device_key(self) -> str | None:
        """The first device key of a server exposed to the network, to show once (or None)."""
        return auth.ensure_first_device_key(self.registry)

    def create_pairing_code(self, device: str | None = None) -> auth.PairingCode:
        """A short one-time code a device trades for a key (named ``device``, or as it asks)."""
        return auth.create_pairing_code(self.registry, device)

    def pair(self, request: PairingRequest) -> PairedDevice:
        """Trade a pairing code for a new device key (AuthError for a wrong or stale code)."""
        device, key = auth.redeem_pairing_code(self.registry, request.code, request.device)
        return PairedDevice(device=device, key=key)

    def device_keys(self) -> list[auth.DeviceKey]:
        return auth.list_device_keys(self.registry)

    def revoke_device_key(self, name: str) -> None:
        auth.revoke_device_key(self.registry, name)

    def device_of_key(self, key: str | None) -> str:
        """The device a key belongs to; AuthError for a missing, wrong or revoked key."""
        return auth.device_of_key(self.registry, key)

    def has_device_keys(self) -> bool:
        return auth.has_device_keys(self.registry)

    def needs_admin_password(self) -> bool:
        """True until the desktop's admin password has been chosen."""
        return not auth.has_secret(self.registry, auth.DESKTOP_ADMIN_PASSWORD)

    def choose_admin_password(self, password: str) -> None:
        auth.choose_password(self.registry, auth.DESKTOP_ADMIN_PASSWORD, password)

    def verify_admin_password(self, password: str) -> None:
        """AuthError for a wrong password, and for any after too many wrong ones (setting
        ``rate_limit_sign_in``, counted in this process)."""
        guard = self._kept.get(
            "sign_in_guard",
            lambda: auth.SignInGuard(rate_limits(self.settings, "rate_limit_sign_in")),
        )
        guard.check(
            lambda: auth.verify_secret(self.registry, auth.DESKTOP_ADMIN_PASSWORD, password)
        )

    # --- Usage -----------------------------------------------------------------------------
    def record_usage(self, client: str, event: str, count: int = 1) -> None:
        record_usage(self.registry, client, event, count)

    def usage(self, client: str) -> dict[str, int]:
        return usage_counts(self.registry, client)
