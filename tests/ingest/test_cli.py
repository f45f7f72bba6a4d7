"""The CLI through its real entry point, in subprocesses, including a SIGKILL mid-ingest."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.config import load_settings
from tests.ingest.test_ingest import assert_consistent, registered, store_of

SCRIPT = Path(sys.executable).with_name("classifi")
CLASSIFI = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "classifi"]


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CLASSIFI_")}
    return {**env, "CLASSIFI_HOME": str(home), **extra}


def classifi(home: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLASSIFI, *args],
        env=cli_env(home, **extra_env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = classifi(tmp_path, "--help")

    assert result.returncode == 0, result.stderr
    assert "ingest" in result.stdout and "status" in result.stdout


def test_ingest_then_status(tmp_path: Path, dataset_dir: Path) -> None:
    ingested = classifi(tmp_path, "ingest", str(dataset_dir), "--json")
    assert ingested.returncode == 0, ingested.stderr
    assert json.loads(ingested.stdout)["added"] == 340

    again = classifi(tmp_path, "ingest", str(dataset_dir))
    assert again.returncode == 0, again.stderr
    assert "Already present" in again.stdout and "340" in again.stdout

    status = classifi(tmp_path, "status", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["photos"]["by_label"] == {"dandelion": 170, "grass": 170}
    assert report["photos"]["by_status"]["trained"] == 340
    assert report["champion"] is None
    assert report["stores"]["registry"] == f"sqlite:///{tmp_path.resolve() / 'registry.db'}"

    human = classifi(tmp_path, "status")
    assert human.returncode == 0, human.stderr
    assert "none yet" in human.stdout


def test_a_missing_source_fails_with_a_clear_error(tmp_path: Path) -> None:
    result = classifi(tmp_path, "ingest", str(tmp_path / "absent"))

    assert result.returncode != 0
    assert "does not exist" in result.stderr


def test_an_unknown_setting_is_named(tmp_path: Path) -> None:
    result = classifi(tmp_path, "status", CLASSIFI_REGISTRY_ULR="sqlite:///x.db")

    assert result.returncode != 0
    assert "CLASSIFI_REGISTRY_ULR" in result.stderr


def count_rows(database: Path) -> int:
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
            return int(connection.execute("SELECT count(*) FROM plants_data").fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # not created or not migrated yet


@pytest.mark.slow
def test_a_killed_ingest_is_completed_by_the_next_run(tmp_path: Path, dataset_dir: Path) -> None:
    database = tmp_path / "registry.db"
    process = subprocess.Popen(
        [*CLASSIFI, "ingest", str(dataset_dir)],
        env=cli_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while process.poll() is None and count_rows(database) == 0:
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    killed_at = count_rows(database)
    if process.returncode != -signal.SIGKILL or killed_at >= 340:
        pytest.fail(f"the ingest ended before it could be killed ({killed_at} rows)")

    settings = load_settings({}, overrides={"home": tmp_path})
    # Every row has its object, and every visible object is complete (named by its own hash).
    # Objects stored just before the kill may lack their row: the next run registers them.
    # (A write cut short leaves only an invisible .tmp-*.part file, never a partial object.)
    rows = registered(settings)
    assert len(rows) == killed_at
    store = store_of(settings)
    visible = list(store.list())
    assert {row.object_key for row in rows} <= set(visible)
    for key in visible:
        assert hashlib.sha256(store.get(key)).hexdigest() == Path(key).stem

    rerun = classifi(tmp_path, "ingest", str(dataset_dir), "--json")

    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert (report["added"], report["already_present"]) == (340 - killed_at, killed_at)
    rows = registered(settings)
    assert len(rows) == len({row.sha256 for row in rows}) == 340
    assert_consistent(settings)
