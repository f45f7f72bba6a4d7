"""The maintenance lock: one retrain, repair or re-embed at a time, across every process.

A lock never outlives its holder, because the operating system or the database releases it
when the holder dies (SIGKILL or a power cut included):

- embedded (SQLite registry): an OS file lock (``fcntl.flock``) on a file beside the
  registry, shared by every process on the machine;
- PostgreSQL registry: a session-level advisory lock, shared by every machine on the
  database, released when the holding connection closes.

There is no Redis lease: workers that share a Redis queue on several machines share the
PostgreSQL registry too (SQLite cannot be shared across machines), so its advisory lock
already spans them, and on one machine the file lock does. A lease would be a second lock on
the same processes, one that a stalled renewal can lose while its holder still works.

The holder writes who it is (host, pid, purpose, since), so ``classifi status`` and
``classifi doctor`` can say who holds it. Taking a held lock never waits: it raises
:class:`LockHeld`, naming the holder.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import exc, text
from sqlalchemy.engine import make_url

from core.errors import LockHeld
from core.registry import Registry
from core.registry.db import translate_db_error

# pg_try_advisory_lock's key: any constant the application owns ("classifi" in ASCII).
ADVISORY_KEY = 0x636C617373696669
_APPLICATION_PREFIX = "classifi-lock "


@dataclass(frozen=True)
class LockHolder:
    host: str
    pid: int
    purpose: str
    since: str  # ISO 8601, UTC

    def describe(self) -> str:
        return f"{self.purpose} by pid {self.pid} on {self.host} since {self.since}"

    @classmethod
    def me(cls, purpose: str) -> LockHolder:
        return cls(socket.gethostname(), os.getpid(), purpose, datetime.now(UTC).isoformat())


def _held(holder: LockHolder | None) -> LockHeld:
    who = holder.describe() if holder else "another process"
    return LockHeld(
        f"The maintenance lock is held ({who}): a retrain or repair is running. Try again "
        "when it has finished; a holder that dies releases the lock at once."
    )


# --- Embedded: a file lock ----------------------------------------------------------------


def _lock_file(registry: Registry) -> Path:
    database = make_url(registry.url).database or ""
    return Path(database).expanduser().with_name("maintenance.lock")


@contextlib.contextmanager
def _file_lock(path: Path, purpose: str) -> Iterator[LockHolder]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _held(_read_holder(path)) from None
        holder = LockHolder.me(purpose)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(asdict(holder)))
        handle.flush()
        try:
            yield holder
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_holder(path: Path) -> LockHolder | None:
    try:
        return LockHolder(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def _file_holder(path: Path) -> LockHolder | None:
    """The holder written in the file, if a live process still holds the lock."""
    import fcntl

    if not path.exists():
        return None
    with path.open("a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(path) or LockHolder("unknown", 0, "unknown", "")
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None  # the file may name a dead holder: nobody holds the lock


# --- PostgreSQL: an advisory lock ---------------------------------------------------------


def _application_name(holder: LockHolder) -> str:
    # PostgreSQL keeps 63 bytes of it; the host goes last so only it can be cut short.
    return f"{_APPLICATION_PREFIX}{holder.purpose} {holder.pid} {holder.host}"[:63]


@contextlib.contextmanager
def _advisory_lock(registry: Registry, purpose: str) -> Iterator[LockHolder]:
    holder = LockHolder.me(purpose)
    try:
        connection = registry.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    except exc.SQLAlchemyError as error:
        raise translate_db_error(error, registry.safe_url) from error
    try:
        try:
            # Other sessions read the holder from pg_stat_activity.application_name.
            connection.execute(
                text("SELECT set_config('application_name', :name, false)"),
                {"name": _application_name(holder)},
            )
            taken = connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_KEY}
            ).scalar()
        except exc.SQLAlchemyError as error:
            raise translate_db_error(error, registry.safe_url) from error
        if not taken:
            raise _held(_advisory_holder(registry))
        try:
            yield holder
        finally:
            # Unlock before closing: the server ends a closed session's backend, and frees
            # its locks, only a moment later, so a close alone leaves the lock briefly held.
            with contextlib.suppress(exc.SQLAlchemyError):  # a lost session holds nothing
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_KEY})
    finally:
        # The session carries the holder's application_name: it never returns to the pool.
        connection.invalidate()
        connection.close()


def _advisory_holder(registry: Registry) -> LockHolder | None:
    with registry.engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT a.application_name, a.client_addr, a.pid, a.state_change "
                "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted "
                "AND l.classid = :high AND l.objid = :low"
            ),
            {"high": ADVISORY_KEY >> 32, "low": ADVISORY_KEY & 0xFFFFFFFF},
        ).first()
    if row is None:
        return None
    since = row.state_change.isoformat() if row.state_change else ""
    name = str(row.application_name or "")
    if name.startswith(_APPLICATION_PREFIX):
        purpose, pid, host = [*name[len(_APPLICATION_PREFIX) :].split(" ", 2), "", ""][:3]
        if pid.isdigit():
            return LockHolder(host or "unknown", int(pid), purpose, since)
    return LockHolder(str(row.client_addr or "unknown"), int(row.pid), "unknown", since)


# --- The interface ------------------------------------------------------------------------


@contextlib.contextmanager
def maintenance_lock(registry: Registry, purpose: str) -> Iterator[LockHolder]:
    """Hold the maintenance lock for ``purpose`` (e.g. "retrain"), or raise :class:`LockHeld`."""
    if registry.is_sqlite:
        with _file_lock(_lock_file(registry), purpose) as holder:
            yield holder
    else:
        with _advisory_lock(registry, purpose) as holder:
            yield holder


def lock_holder(registry: Registry) -> LockHolder | None:
    """Who holds the maintenance lock now, or None."""
    if registry.is_sqlite:
        return _file_holder(_lock_file(registry))
    return _advisory_holder(registry)
