"""Fan-out: an ingest and a re-embed split into parts that two real workers on one Redis
share, started and waited for from the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.model.backbones import EFFICIENTNET_LITE0
from core.registry import Embedding, Photo, Registry
from tests.installation import offline_settings
from tests.loop.conftest import link_folder
from tests.worker.conftest import REPO_ROOT, start_worker
from worker.fanout import chunks

PER_LABEL = 12


def classifi(home: Path, queue_url: str, *args: str) -> dict[str, object]:
    """A ``classifi`` command on ``home``, its JSON report."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CLASSIFI_")}
    env.update(
        CLASSIFI_HOME=str(home), CLASSIFI_QUEUE_URL=queue_url, CLASSIFI_BACKBONE=EFFICIENTNET_LITE0
    )
    done = subprocess.run(
        [sys.executable, "-m", "classifi", *args, "--json"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, object] = json.loads(done.stdout)
    return report


def test_chunks_cover_every_item_once() -> None:
    assert chunks(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert chunks([], 3) == []


@pytest.mark.slow
@pytest.mark.integration
def test_two_workers_share_an_ingest_and_a_reembed(
    tmp_path: Path, redis_url: str, dataset_photos: dict[str, list[Path]]
) -> None:
    home = tmp_path / "home"
    source = link_folder(
        tmp_path / "source", {label: paths[:PER_LABEL] for label, paths in dataset_photos.items()}
    )
    logs = [tmp_path / f"worker{n}.log" for n in (1, 2)]
    workers = [start_worker(home, log, queue_url=redis_url) for log in logs]
    try:
        ingested = classifi(home, redis_url, "ingest", str(source), "--queue", "--chunk-size", "5")
        assert ingested["added"] == 2 * PER_LABEL and ingested["skipped"] == 0
        again = classifi(home, redis_url, "ingest", str(source), "--queue", "--chunk-size", "5")
        assert again["added"] == 0 and again["already_present"] == 2 * PER_LABEL

        embedded = classifi(home, redis_url, "reembed", "--queue", "--chunk-size", "4")
        assert embedded == {
            "backbone": EFFICIENTNET_LITE0,
            "photos": 2 * PER_LABEL,
            "embedded": 2 * PER_LABEL,
        }
        assert classifi(home, redis_url, "reembed", "--queue")["embedded"] == 0
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGINT)
        codes = [worker.wait(timeout=120) for worker in workers]
    assert codes == [0, 0], [log.read_text()[-2000:] for log in logs]

    registry = Registry(offline_settings(home).registry_url)
    try:
        with registry.session() as session:
            photos = session.scalar(select(func.count()).select_from(Photo))
            cached = session.scalar(
                select(func.count()).where(Embedding.backbone_id == EFFICIENTNET_LITE0)
            )
    finally:
        registry.dispose()
    assert photos == cached == 2 * PER_LABEL
    # Every part ran once, on one worker or the other: 5 + 5 ingest parts, 6 embed parts
    # (the second re-embed had nothing to queue).
    texts = [log.read_text() for log in logs]
    executed = [
        [line for line in text.splitlines() if "executed in" in line and "_chunk" in line]
        for text in texts
    ]
    assert sum(len(lines) for lines in executed) == 16, [len(lines) for lines in executed]
