"""A home's first steps: labelled folders imported and trained on, and the default model.

**Importing labelled folders** (the desktop's Get started, and photos or labels added later)
happens in two steps. :func:`preview_import` reads and checks every photo and says what an
import would do, storing nothing; an import that cannot give a model (a single label, too few
photos for a label) is refused there, before anything is stored. :func:`import_photos` then
stores the photos, saves the label set and trains. It is all or nothing until the photos are
stored: cancelled or failed before, it removes the photos it had stored (a journalled delete,
so a crash meanwhile is finished by the next ``resume_moves``).

**The labels are the folder names.** A home's label set is its setting ``labels``; an import
that changes it writes the new set to the home's config file (``<home>/config.toml``, or the
file the settings were read from), which every process on the home reads when it starts.
Existing labels keep their order and new ones follow, sorted. A fresh home's defaults count
for nothing: its first import's folders are its labels.

**The default model**: a bundle ships a trained model; :func:`install_model` makes it the
champion of a home that has no model yet, so a fresh install classifies out of the box.
"""

from __future__ import annotations

import json
import logging
import re
import tomllib
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update

from core.config import Settings
from core.errors import ConfigError, Conflict, InvalidKey, TrainingRefused
from core.imaging import PHOTO_SUFFIXES, CheckedPhoto
from core.ingest import IngestReport, Listing, Skipped, SourceItem, ingest
from core.ingest.fetching import Fetcher, fetch_photo
from core.loop.policy import gate
from core.model.training import Progress, TrainingResult, train_model
from core.model.versions import add_candidate, champion, get_version
from core.registry import ModelState, ModelVersion, Photo, PhotoStatus, Registry
from core.store import ObjectStore, label_prefix
from core.wire import GateDecision, ModelSummary

log = logging.getLogger(__name__)

#: The prefix submissions live under: no label may take its name.
RESERVED_LABELS = frozenset({"new_data"})
LABEL_MAX_LENGTH = 64  # the registry's label column
CHECK_WORKERS = 4  # photos read and decoded at once while previewing


@dataclass
class ImportPreview:
    """What importing some labelled folders would do (nothing is stored by a preview)."""

    #: The home's labels now (those of its training photos) and after the import.
    labels_before: list[str]
    labels_after: list[str]
    #: Photos per label: new ones to store, and those the home already has.
    new_photos: dict[str, int]
    already_present: dict[str, int]
    #: Files that will not be imported, each with its reason.
    skipped: list[Skipped]
    #: Why the import cannot give a model, each naming the fix; empty when it can.
    problems: list[str]
    #: What the import stores, and the sha256 of each (to undo an import cut short).
    items: list[SourceItem] = field(default_factory=list)
    sha256s: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def new_labels(self) -> list[str]:
        return [label for label in self.labels_after if label not in self.labels_before]

    @property
    def total_new(self) -> int:
        return len(self.items)

    def skipped_by_reason(self) -> dict[str, int]:
        return dict(sorted(Counter(item.reason for item in self.skipped).items()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "labels_before": self.labels_before,
            "labels_after": self.labels_after,
            "new_labels": self.new_labels,
            "new_photos": self.new_photos,
            "already_present": self.already_present,
            "skipped": [item._asdict() for item in self.skipped],
            "skipped_by_reason": self.skipped_by_reason(),
            "problems": self.problems,
        }


@dataclass(frozen=True)
class ImportOutcome:
    """What an import did: the photos stored, the labels saved, the model trained."""

    report: IngestReport
    labels: list[str]
    training: TrainingResult
    #: The gate's decision when there was a champion: a champion of other labels leaves the
    #: model a candidate, for an admin to promote.
    gate: GateDecision | None
    #: The new version's state: champion, candidate (waiting for an admin) or refused.
    state: ModelState

    @property
    def champion(self) -> bool:
        return self.state == ModelState.CHAMPION

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "photos": self.report.to_dict(),
            "version": self.training.version_id,
            "state": str(self.state),
            "metrics": self.training.metrics,
            "gate": None if self.gate is None else self.gate.to_dict(),
        }


# --- Folders ------------------------------------------------------------------------------


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def label_folders(paths: Sequence[Path]) -> tuple[dict[str, Path], list[Path]]:
    """The label folders ``paths`` name, by label, and the files outside any label folder.

    One folder that holds folders is a folder of label folders; otherwise each folder given is
    a label folder itself (as when label folders are dropped on the window).
    """
    folders = [path for path in paths if path.is_dir()]
    loose = [path for path in paths if path.is_file()]
    if len(folders) == 1:
        children = sorted(child for child in folders[0].iterdir() if _visible(child))
        if any(child.is_dir() for child in children):
            # Loose photos are reported; other loose files (a README) document the folder.
            loose += [c for c in children if c.is_file() and c.suffix.lower() in PHOTO_SUFFIXES]
            folders = [child for child in children if child.is_dir()]
    by_label: dict[str, Path] = {}
    for folder in folders:
        by_label.setdefault(folder.name, folder)
    return by_label, loose


def _files_in(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and all(_visible(Path(part)) for part in path.relative_to(folder).parts)
    )


def label_problem(label: str) -> str | None:
    """Why a folder name cannot be a label, or None."""
    rename = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._-") or "a_name"
    if label in RESERVED_LABELS:
        return f"The folder name {label!r} is reserved for submissions: rename the folder."
    if len(label) > LABEL_MAX_LENGTH:
        return f"The folder name {label[:20]!r}… is longer than {LABEL_MAX_LENGTH} characters."
    try:
        label_prefix(label)
    except InvalidKey:
        return (
            f"The folder name {label!r} cannot be a label: use letters, digits, '.', '_' and '-' "
            f"only (rename it, e.g. to {rename!r})."
        )
    return None


# --- The home's labels --------------------------------------------------------------------


def trained_counts(registry: Registry) -> dict[str, int]:
    """Training photos per label in the home."""
    with registry.session() as session:
        rows = session.execute(
            select(Photo.label, func.count(Photo.id))
            .where(Photo.status == PhotoStatus.TRAINED)
            .group_by(Photo.label)
        ).all()
    return {str(label): int(count) for label, count in rows}


def home_labels(settings: Settings, registry: Registry) -> list[str]:
    """The labels of the home's training photos, in the order of the setting ``labels``."""
    present = trained_counts(registry)
    ordered = [label for label in settings.labels if label in present]
    return ordered + sorted(set(present) - set(ordered))


def config_path(settings: Settings) -> Path:
    return settings.config_file or settings.home / "config.toml"


def save_labels(settings: Settings, labels: Sequence[str]) -> Settings:
    """Write ``labels`` as the home's setting ``labels`` (the other settings in the file stay,
    comments too) and return the settings with them."""
    labels = list(labels)
    path = config_path(settings)
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    try:
        before = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Config file {path} is not valid TOML: {exc}") from None
    line = f"labels = {json.dumps(labels)}"  # a JSON array of plain names is TOML too
    assignment = re.compile(r"^labels\s*=.*$", re.MULTILINE)
    text = assignment.sub(line, text, count=1) if "labels" in before else f"{line}\n{text}"
    try:
        after = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        after = {}
    if after != {**before, "labels": labels}:  # e.g. labels spread over several lines
        raise ConfigError(
            f"Cannot update the setting labels in {path}: write `{line}` there by hand."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial_path = path.with_name(f".{path.name}.part")
    partial_path.write_text(text, encoding="utf-8")
    partial_path.replace(path)
    log.info("the labels of %s are now %s (saved in %s)", settings.home, labels, path)
    return settings.model_copy(update={"labels": tuple(labels)})


# --- Preview ------------------------------------------------------------------------------


def preview_import(
    settings: Settings,
    registry: Registry,
    paths: Sequence[Path],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> ImportPreview:
    """Read and check every photo of the label folders ``paths`` name (see
    :func:`label_folders`) and say what importing them would do; nothing is stored."""
    folders, loose = label_folders(paths)
    skipped = [
        Skipped(
            str(path),
            "outside_label_folder",
            "The photo is not inside a label folder: move it into a sub-folder named after "
            "its label.",
        )
        for path in loose
    ]
    problems = [problem for label in folders if (problem := label_problem(label))]
    usable = {label: folder for label, folder in folders.items() if label_problem(label) is None}
    candidates = [
        SourceItem(str(path), label)
        for label, folder in usable.items()
        for path in _files_in(folder)
    ]
    checked = _check_all(settings, candidates, progress)

    known = _registered(registry, {sha for sha in checked.values() if isinstance(sha, str)})
    items: list[SourceItem] = []
    sha256s: list[str] = []
    seen: dict[str, SourceItem] = {}
    new_photos: Counter[str] = Counter()
    present: Counter[str] = Counter()
    for item in candidates:
        sha = checked[item.location]
        if isinstance(sha, Skipped):
            continue
        if sha in seen:
            first = seen[sha]
            same = first.label == item.label
            skipped.append(
                Skipped(
                    item.location,
                    "duplicate" if same else "label_conflict",
                    f"The same photo as {first.location}"
                    + ("." if same else f", which is in the folder {first.label!r}."),
                )
            )
            continue
        seen[sha] = item
        if sha in known:
            label, status = known[sha]
            if label == item.label and status == PhotoStatus.TRAINED:
                present[item.label] += 1
            else:
                skipped.append(
                    Skipped(
                        item.location,
                        "label_conflict",
                        f"The same photo is already in this home as {label or 'unlabelled'} "
                        f"({status}); it is not relabelled.",
                    )
                )
            continue
        items.append(item)
        sha256s.append(sha)
        new_photos[item.label] += 1
    skipped += [outcome for outcome in checked.values() if isinstance(outcome, Skipped)]

    labels_before = home_labels(settings, registry)
    counts = trained_counts(registry)
    arriving = sorted({*new_photos, *present} - set(labels_before))
    labels_after = labels_before + arriving
    problems += _trainability(settings, labels_after, counts, new_photos, bool(folders))
    return ImportPreview(
        labels_before=labels_before,
        labels_after=labels_after,
        new_photos={label: new_photos[label] for label in labels_after if new_photos[label]},
        already_present={label: present[label] for label in labels_after if present[label]},
        skipped=skipped,
        problems=problems,
        items=items,
        sha256s=sha256s,
    )


def _check_all(
    settings: Settings,
    items: list[SourceItem],
    progress: Callable[[int, int], None] | None,
) -> dict[str, str | Skipped]:
    """Each item read and checked (decoded), by location: its sha256, or why it is skipped.
    The pixels are not kept."""
    fetcher = Fetcher(settings)
    results: dict[str, str | Skipped] = {}
    if progress:
        progress(0, len(items))
    with ThreadPoolExecutor(CHECK_WORKERS, thread_name_prefix="check") as pool:
        for done, (item, outcome) in enumerate(
            zip(items, pool.map(partial(fetch_photo, fetcher, settings), items), strict=True),
            start=1,
        ):
            results[item.location] = (
                outcome.sha256 if isinstance(outcome, CheckedPhoto) else outcome
            )
            if progress and (done % 16 == 0 or done == len(items)):
                progress(done, len(items))
    return results


def _registered(registry: Registry, hashes: set[str]) -> dict[str, tuple[str | None, PhotoStatus]]:
    if not hashes:
        return {}
    with registry.session() as session:
        rows = session.execute(
            select(Photo.sha256, Photo.label, Photo.status).where(Photo.sha256.in_(hashes))
        ).all()
    return {sha: (label, status) for sha, label, status in rows}


def _trainability(
    settings: Settings,
    labels: list[str],
    counts: dict[str, int],
    new_photos: Counter[str],
    found_folders: bool,
) -> list[str]:
    """Why the home after the import could not train a model (each with its fix)."""
    if not found_folders:
        return [
            "No label folders found: choose a folder with one sub-folder of photos per label "
            "(e.g. dandelion/ and grass/), or drop the label folders themselves."
        ]
    if not labels:
        return ["No photos to import: the folders hold no photo that could be read."]
    if len(labels) < 2:
        return [
            f"Only one label ({labels[0]}): a model tells at least two labels apart. Add a "
            "folder of photos for each other label."
        ]
    minimum = settings.min_photos_per_label
    few = {
        label: total
        for label in labels
        if (total := counts.get(label, 0) + new_photos[label]) < minimum
    }
    if not few:
        return []
    shown = ", ".join(f"{label} has {count}" for label, count in few.items())
    return [
        f"Too few photos: {shown}; every label needs at least {minimum} (setting "
        "min_photos_per_label). Add photos to those folders."
    ]


# --- Import -------------------------------------------------------------------------------


def import_photos(
    settings: Settings,
    registry: Registry,
    store: ObjectStore,
    preview: ImportPreview,
    *,
    actor: str,
    stored: Callable[[int, int], None] | None = None,
    progress: Progress | None = None,
) -> ImportOutcome:
    """Store the previewed photos, save the label set, train a model and (when a champion of
    the same labels is there) gate it. ``stored(done, total)`` follows the photos; raising
    :class:`~core.errors.Cancelled` from it (or from ``progress``) stops the import.

    A preview with problems is refused (:class:`TrainingRefused`). Until every photo is
    stored, a failure removes the photos this import stored; after that the photos and the
    labels stay, and a failed training leaves no model (the next training uses them).
    """
    if not preview.ok:
        raise TrainingRefused(" ".join(preview.problems))
    try:
        report = ingest(Listing(preview.items, []), settings, registry, store, progress=stored)
    except BaseException:
        remove_imported(registry, store, preview.sha256s)
        raise
    if preview.labels_after != list(settings.labels):
        settings = save_labels(settings, preview.labels_after)
    training = train_model(settings, registry, store, progress=progress, actor=actor)
    decision = None
    if not training.became_champion and champion(registry) is not None:
        decision = gate(settings, registry, store, training.version_id, actor=actor)
    state = get_version(registry, training.version_id).state
    return ImportOutcome(report, list(settings.labels), training, decision, state)


def remove_imported(registry: Registry, store: ObjectStore, hashes: Sequence[str]) -> int:
    """Remove the training photos with these sha256s (an import cut short), journalled: the
    rows are marked for deletion in one transaction, then each object and row goes."""
    from core.loop.moves import DELETING, resume_moves

    if not hashes:
        return 0
    with registry.session() as session:
        marked = session.execute(
            update(Photo)
            .where(
                Photo.sha256.in_(list(hashes)),
                Photo.status == PhotoStatus.TRAINED,
                Photo.moving_to.is_(None),
            )
            .values(moving_to=DELETING, updated_at=datetime.now(UTC))
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
    resume_moves(registry, store)
    log.info("removed the %d photos of an import cut short", marked)
    return int(marked)


# --- The default model --------------------------------------------------------------------


def install_model(
    settings: Settings, registry: Registry, store: ObjectStore, data: bytes, *, actor: str
) -> ModelSummary | None:
    """Make the model file ``data`` the champion of a home with no model version yet and the
    same labels; None (nothing done) for any other home."""
    from core.model.artifacts import load_artifact, next_artifact_key
    from core.model.versions import set_champion, summary_of

    artifact = load_artifact(data, source="the shipped model")
    with registry.session() as session:
        if session.scalar(select(func.count(ModelVersion.id))):
            return None
    if artifact.labels != list(settings.labels):
        return None
    key = next_artifact_key(store, artifact.backbone_id, datetime.now(UTC).date())
    store.put(key, data)  # before its row: a crash leaves a file the next training removes
    try:
        with registry.session() as session:
            version_id = add_candidate(
                session,
                artifact,
                key,
                data,
                actor=actor,
                action="install",
                detail={"backbone": artifact.backbone_id, "source": "shipped with the app"},
            )
    except Conflict:
        return None  # another process installed it meanwhile, under this very key
    chosen = set_champion(
        settings, registry, version_id, actor=actor, reason="the model shipped with the app"
    )
    return summary_of(chosen)
