"""The registry database: engine, migrations at start-up, and the one session helper."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from core.errors import Conflict, RegistryError, RegistryUnavailable

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 30_000
# pg_advisory_xact_lock key of schema migrations ("classifm" in ASCII).
MIGRATION_LOCK_KEY = 0x636C61737369666D

_migrated: set[str] = set()
_migrate_lock = threading.Lock()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def translate_db_error(error: exc.SQLAlchemyError, url: str) -> Exception:
    """Turn a SQLAlchemy error into the project's own exception, with a useful message."""
    if isinstance(error, exc.IntegrityError):
        return Conflict(
            f"The registry refused a change that conflicts with existing data: {error.orig}"
        )
    if isinstance(error, exc.OperationalError | exc.InterfaceError) and (
        error.connection_invalidated
        or "connect" in str(error.orig).lower()
        or "unable to open" in str(error.orig)
    ):
        return RegistryUnavailable(
            f"The registry at {url} cannot be reached: {error.orig}. "
            "Check that the database server is running and CLASSIFI_REGISTRY_URL is right."
        )
    return RegistryError(f"Registry error at {url}: {error}")


class Registry:
    """Owns the engine; every unit of work goes through :meth:`session`."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        parsed = make_url(url)
        self.url = url
        self.safe_url = parsed.render_as_string(hide_password=True)
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {
                "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                "check_same_thread": False,
            }
        elif parsed.get_backend_name() == "postgresql":
            kwargs["connect_args"] = {"connect_timeout": 5}
        self.engine: Engine = create_engine(url, **kwargs)
        if parsed.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            self.migrate()

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def migrate(self) -> None:
        """Bring the schema to the newest revision (once per URL and process).

        Processes that open a fresh registry together (the workers of one server, a worker
        beside the desktop) take turns: the first migrates, the others find it done."""
        with _migrate_lock:
            if self.url in _migrated:
                return
            from alembic import command
            from alembic.config import Config

            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS_DIR))
            try:
                with self._migration_turn(), self.engine.begin() as connection:
                    if not self.is_sqlite:
                        connection.execute(
                            text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                        )
                    config.attributes["connection"] = connection
                    command.upgrade(config, "head")
            except exc.SQLAlchemyError as error:
                raise translate_db_error(error, self.safe_url) from error
            _migrated.add(self.url)
            log.debug("registry %s is at the newest schema", self.safe_url)

    @contextmanager
    def _migration_turn(self) -> Iterator[None]:
        """On SQLite, a file lock beside the database (PostgreSQL locks in the transaction)."""
        database = make_url(self.url).database
        if not self.is_sqlite or not database or database == ":memory:":
            yield
            return
        import fcntl

        with Path(database).expanduser().with_name("migrations.lock").open("w") as turn:
            fcntl.flock(turn, fcntl.LOCK_EX)  # released when the file closes, or the process dies
            yield

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: commits on success, rolls back on any error.

        Database errors come out as :class:`RegistryError` subclasses.
        """
        session = self._sessions()
        try:
            yield session
            session.commit()
        except exc.SQLAlchemyError as error:
            session.rollback()
            raise translate_db_error(error, self.safe_url) from error
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def ping(self) -> None:
        """Raise :class:`RegistryUnavailable` if the database does not answer."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except exc.SQLAlchemyError as error:
            raise RegistryUnavailable(
                f"The registry at {self.safe_url} does not answer: {error}"
            ) from error

    def dispose(self) -> None:
        self.engine.dispose()
