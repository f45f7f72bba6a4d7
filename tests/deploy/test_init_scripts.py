"""The one-shot set-up script of MLflow's database, run for real against PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "packaging" / "init" / "create-mlflow-database.sh"


def psql_dir() -> str:
    found = shutil.which("psql") or next(
        iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"))), None
    )
    if found is None:
        pytest.skip("psql is not installed (apt-get install postgresql-client)")
    return str(Path(found).parent)


@pytest.fixture
def server(postgres_server: str) -> Iterator[sqlalchemy.Engine]:
    engine = sqlalchemy.create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
    yield engine
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text("DROP DATABASE IF EXISTS mlflow WITH (FORCE)"))
        connection.execute(sqlalchemy.text("DROP ROLE IF EXISTS mlflow"))
    engine.dispose()


def create(server: sqlalchemy.Engine, password: str) -> subprocess.CompletedProcess[str]:
    url = urlsplit(server.url.render_as_string(hide_password=False))
    environment = {
        "PATH": f"{psql_dir()}:{os.environ['PATH']}",
        "PGHOST": url.hostname or "",
        "PGPORT": str(url.port),
        "PGUSER": url.username or "",
        "PGPASSWORD": url.password or "",
        "PGDATABASE": "postgres",
        "MLFLOW_DB_PASSWORD": password,
    }
    return subprocess.run(["bash", str(SCRIPT)], env=environment, capture_output=True, text=True)


def mlflow_role(server: sqlalchemy.Engine) -> tuple[str, str | None, str]:
    with server.connect() as connection:
        row = connection.execute(
            sqlalchemy.text(
                "SELECT r.rolname, r.rolpassword, pg_get_userbyid(d.datdba) FROM pg_authid r, "
                "pg_database d WHERE r.rolname = 'mlflow' AND d.datname = 'mlflow'"
            )
        ).one()
    return row[0], row[1], row[2]


def test_it_creates_the_role_and_its_database_and_follows_the_password(
    server: sqlalchemy.Engine,
) -> None:
    first = create(server, "first-password")
    assert first.returncode == 0, first.stderr
    name, first_hash, owner = mlflow_role(server)
    assert (name, owner) == ("mlflow", "mlflow") and first_hash

    # Run again, as every `docker compose up` does: nothing fails, the password follows .env.
    again = create(server, "second-password'; DROP ROLE mlflow; --")
    assert again.returncode == 0, again.stderr
    _, second_hash, _ = mlflow_role(server)
    assert second_hash and second_hash != first_hash


def test_it_refuses_to_run_without_a_password(server: sqlalchemy.Engine) -> None:
    result = create(server, "")
    assert result.returncode != 0
    assert "MLFLOW_DB_PASSWORD" in result.stderr
