"""Back up and restore a home on the embedded stores: registry, bucket, MLflow, runtimes.

A backup is consistent while the app runs:
- the SQLite databases are copied with SQLite's online backup API (never a file copy, which
  can catch a half-written page), the registry first;
- the bucket is copied after the registry, so every row's object is there or, if a move
  finished meanwhile, its bytes are under another prefix of the same content-addressed name;
- the copy is then checked and repaired by the doctor against its own registry, so the
  backup is self-consistent before it is declared complete;
- the maintenance lock is held, so no retrain or repair runs meanwhile.

The backup is written to a temporary folder beside the destination and renamed into place
at the end: an interrupted backup leaves nothing that looks complete. A restore does the
same into the home. Deployments on PostgreSQL and S3 back up with their own tools
(pg_dump, the bucket's replication) instead.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

from core.config import Settings
from core.errors import ConfigError, Conflict, SourceError
from core.locks import maintenance_lock
from core.registry import Registry
from core.store import LocalStore
from core.store.local import TEMP_PREFIX

log = logging.getLogger(__name__)

MANIFEST = "classifi-backup.json"
FORMAT = 1
#: Databases copied with the online backup API when on SQLite, by the setting naming each.
DATABASES = ("registry_url", "mlflow_tracking_uri")
#: Folders of the home copied as files (the bucket is handled apart).
FOLDERS = ("mlartifacts", "runtimes")


@dataclass(frozen=True)
class BackupReport:
    path: str
    created_at: str
    photos: int
    models: int
    objects: int
    repaired: list[str]  # what the doctor fixed in the copy

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _databases(settings: Settings) -> dict[str, Path]:
    """The SQLite files to copy. The registry must be one; an MLflow server is left out."""
    if not settings.registry_url.startswith("sqlite:///"):
        raise ConfigError(
            "Backups cover the embedded stores; the registry is a database server: back it up "
            "with its own tools (e.g. pg_dump)."
        )
    return {
        setting: Path(getattr(settings, setting).removeprefix("sqlite:///"))
        for setting in DATABASES
        if getattr(settings, setting).startswith("sqlite:///")
    }


def _bucket_path(settings: Settings) -> Path:
    parts = urlsplit(settings.store_url)
    if parts.scheme != "file":
        raise ConfigError(
            "Backups cover the embedded stores; store_url is an S3 bucket: back it up with "
            "the bucket's own replication or `mc mirror`."
        )
    return Path(unquote(parts.path))


def _copy_database(source: Path, destination: Path) -> None:
    """SQLite's online backup: a consistent copy even while other processes write."""
    live, copy = sqlite3.connect(source), sqlite3.connect(destination)
    try:
        live.backup(copy)
    finally:
        copy.close()
        live.close()


def _copy_tree(source: Path, destination: Path) -> int:
    """Copy the files of ``source`` (unfinished writes skipped); returns how many."""
    copied = 0
    for path in sorted(source.rglob("*")):
        if not path.is_file() or path.name.startswith(TEMP_PREFIX):
            continue
        target = destination / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        copied += 1
    return copied


def _staging(destination: Path) -> Path:
    destination.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{destination.name}-", dir=destination.parent))


def backup(
    settings: Settings, destination: Path, *, progress: Callable[[str], None] | None = None
) -> BackupReport:
    """Write a consistent backup of the home to ``destination`` (which must not exist)."""
    from core.loop.doctor import check_consistency

    destination = destination.expanduser().resolve()
    if destination.exists():
        raise Conflict(f"{destination} exists already: back up to a new folder.")
    home = settings.home
    databases = _databases(settings)
    bucket = _bucket_path(settings)
    say = progress or (lambda _step: None)
    staging = _staging(destination)
    registry = Registry(settings.registry_url)
    try:
        with maintenance_lock(registry, "backup"):
            for path in databases.values():
                if path.is_file():
                    say(f"copying {path.name}")
                    _copy_database(path, staging / path.name)
            say("copying the bucket")
            objects = _copy_tree(bucket, staging / "bucket")
            for folder in FOLDERS:
                if (home / folder).is_dir():
                    say(f"copying {folder}/")
                    _copy_tree(home / folder, staging / folder)
            if (home / "config.toml").is_file():
                shutil.copy2(home / "config.toml", staging / "config.toml")

        say("checking the copy")
        copy = Registry(f"sqlite:///{staging / databases['registry_url'].name}")
        try:
            report = check_consistency(settings, copy, LocalStore(staging / "bucket"), repair=True)
        finally:
            copy.dispose()
        repaired = [f"{issue.kind}: {issue.subject}" for issue in report.issues]
        result = BackupReport(
            str(destination),
            datetime.now(UTC).isoformat(timespec="seconds"),
            report.photos,
            report.models,
            objects,
            repaired,
        )
        manifest = {
            "format": FORMAT,
            "home": str(home),
            "databases": {s: p.name for s, p in databases.items() if (staging / p.name).exists()},
            **result.to_dict(),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        os.replace(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        registry.dispose()
    log.info(
        "backed up %s to %s (%d photos, %d models)", home, destination, result.photos, result.models
    )
    return result


def restore(settings: Settings, source: Path, *, replace: bool = False) -> dict[str, object]:
    """Put a backup back as the home; the home must be empty unless ``replace``.

    With ``replace`` the current home is kept beside the restored one (``<home>.replaced-<time>``),
    never deleted. Stop the app, server and worker on this home first.
    """
    source = source.expanduser().resolve()
    manifest_path = source / MANIFEST
    if not manifest_path.is_file():
        raise SourceError(f"{source} is not a ClassifiImage backup (no {MANIFEST}).")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise SourceError(f"{source} is a backup of format {manifest.get('format')}, not {FORMAT}.")
    databases = _databases(settings)
    _bucket_path(settings)
    home = settings.home
    if home.exists() and any(home.iterdir()) and not replace:
        raise Conflict(
            f"The home {home} holds data: restore into an empty home, or pass replace to keep "
            "the current one aside and restore in its place."
        )
    staging = _staging(home)
    try:
        _copy_tree(source, staging)
        (staging / MANIFEST).unlink()
        for setting, path in databases.items():
            name = manifest["databases"].get(setting)
            if name and path.name != name:
                (staging / name).rename(staging / path.name)
        if home.exists():
            if any(home.iterdir()):
                aside = home.with_name(f"{home.name}.replaced-{datetime.now(UTC):%Y%m%dT%H%M%S}")
                os.replace(home, aside)
                log.warning("the previous home was kept at %s", aside)
            else:
                home.rmdir()
        os.replace(staging, home)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest
