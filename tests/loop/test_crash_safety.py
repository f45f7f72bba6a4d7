"""Crash safety: die at every step of a submission, a review move and a retrain (a fault
hook that raises, and real SIGKILLs of a subprocess), restart, and check that no photo was
lost, orphaned or counted twice, no model half-made, and the doctor finds all consistent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.locks import lock_holder
from core.loop.doctor import check_consistency
from core.loop.moves import UPLOADING
from core.loop.policy import retrain_check
from core.loop.review import approve
from core.loop.submissions import submit_photo
from core.model.versions import list_versions
from core.registry import ModelState, Photo, PhotoStatus, RetrainRun
from core.store import RAW_PREFIX
from tests.installation import System, run_classifi
from tests.loop.conftest import BASE_PER_LABEL, folder_label, submit_and_approve
from worker.tasks import build_tasks

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
NOW = timedelta(0)  # no grace: nothing else runs in these tests


class Crash(Exception):
    """Stands for the process dying at a checkpoint."""


def crash_at(step: str, nth: int = 1):  # type: ignore[no-untyped-def]
    seen: list[str] = []

    def checkpoint(name: str) -> None:
        if name == step:
            seen.append(name)
            if len(seen) == nth:
                raise Crash(f"{step} #{nth}")

    return checkpoint


def assert_nothing_lost(system: System) -> None:
    """Every row has its object (where it is or where it goes); every object has a row."""
    keys = set(system.store.list(RAW_PREFIX))
    with system.registry.session() as session:
        rows = session.execute(select(Photo.object_key, Photo.moving_to)).all()
    referenced = {key for key, _ in rows} | {target for _, target in rows if target}
    assert keys <= referenced, f"orphan objects: {keys - referenced}"
    for key, target in rows:
        assert key in keys or target in keys or target == UPLOADING, f"{key} lost"
    report = check_consistency(system.settings, system.registry, system.store)
    kinds = {issue.kind for issue in report.issues}
    assert kinds <= {"unfinished_move", "unfinished_retrain", "orphan_model"}, report.to_dict()


def trained_count(system: System) -> int:
    with system.registry.session() as session:
        return int(
            session.scalar(select(func.count(Photo.id)).where(Photo.status == PhotoStatus.TRAINED))
        )


def assert_retrained_once(system: System) -> None:
    assert check_consistency(system.settings, system.registry, system.store).clean
    assert trained_count(system) == 2 * BASE_PER_LABEL + 10
    versions = list_versions(system.registry)
    assert len(versions) == 2, "the interrupted retrain trained twice"
    assert sum(v.state == ModelState.CHAMPION for v in versions) == 1
    with system.registry.session() as session:
        runs = session.scalars(select(RetrainRun)).all()
    assert len(runs) == 1 and runs[0].finished_at is not None
    assert runs[0].candidate_version_id == versions[0].id and runs[0].photos_moved == 10


@pytest.mark.parametrize(
    ("step", "nth"),
    [
        ("retrain:run-opened", 1),
        ("move:object-moved", 1),
        ("move:object-moved", 6),
        ("move:object-moved", 10),
        ("retrain:photos-moved", 1),
        ("retrain:candidate-trained", 1),
        ("retrain:candidate-recorded", 1),
        ("retrain:gated", 1),
    ],
)
def test_retrain_resumes_after_a_crash_at_each_step(
    make_system, fresh_photos, step: str, nth: int
) -> None:
    system: System = make_system()
    submit_and_approve(system, fresh_photos["dandelion"][:5] + fresh_photos["grass"][:5])
    with pytest.raises(Crash):
        retrain_check(
            system.settings, system.registry, system.store, checkpoint=crash_at(step, nth)
        )
    assert_nothing_lost(system)

    outcome = retrain_check(system.settings, system.registry, system.store)
    assert outcome.due and outcome.candidate_version is not None
    assert_retrained_once(system)


def test_a_crash_inside_training_leaves_no_model_and_is_resumed(make_system, fresh_photos) -> None:
    system: System = make_system()
    submit_and_approve(system, fresh_photos["dandelion"][:5] + fresh_photos["grass"][:5])

    def die_mid_training(stage: str, done: int, _total: int) -> None:
        if stage == "train" and done == 3:
            raise Crash("epoch 3")

    with pytest.raises(Crash):
        retrain_check(system.settings, system.registry, system.store, progress=die_mid_training)
    assert len(list_versions(system.registry)) == 1
    assert_nothing_lost(system)
    retrain_check(system.settings, system.registry, system.store)
    assert_retrained_once(system)


@pytest.mark.parametrize("step", ["review:claimed", "move:object-moved"])
def test_review_move_resumes_after_a_crash(make_system, fresh_photos, step: str) -> None:
    system: System = make_system()
    path = fresh_photos["grass"][0]
    photo = submit_photo(
        system.settings, system.registry, system.store, path.read_bytes(), folder_label(path)
    )
    with pytest.raises(Crash):
        approve(
            system.settings,
            system.registry,
            system.store,
            [photo.photo_id],
            actor="alice",
            checkpoint=crash_at(step),
        )
    assert_nothing_lost(system)
    report = check_consistency(system.settings, system.registry, system.store, repair=True)
    assert [issue.kind for issue in report.issues] == ["unfinished_move"] and report.clean
    with system.registry.session() as session:
        row = session.get(Photo, photo.photo_id)
    assert row.status == PhotoStatus.VALIDATED and row.moving_to is None
    assert system.store.exists(row.object_key)
    assert check_consistency(system.settings, system.registry, system.store).clean


@pytest.mark.parametrize(
    ("step", "survives"), [("submit:row-added", False), ("submit:object-stored", True)]
)
def test_submission_is_finished_or_undone_after_a_crash(
    make_system, fresh_photos, step: str, survives: bool
) -> None:
    system: System = make_system()
    path = fresh_photos["grass"][0]
    with pytest.raises(Crash):
        submit_photo(
            system.settings,
            system.registry,
            system.store,
            path.read_bytes(),
            "grass",
            checkpoint=crash_at(step),
        )
    assert_nothing_lost(system)
    young = check_consistency(system.settings, system.registry, system.store, repair=True)
    assert young.clean and not young.issues  # within the grace: maybe a live upload
    repaired = check_consistency(
        system.settings, system.registry, system.store, repair=True, grace=NOW
    )
    assert [issue.kind for issue in repaired.issues] == ["unfinished_move"]
    with system.registry.session() as session:
        pending = session.scalars(select(Photo).where(Photo.status == PhotoStatus.PENDING)).all()
    assert len(pending) == int(survives)
    assert check_consistency(system.settings, system.registry, system.store, grace=NOW).clean


KILLER = """
import os, signal, sys
from pathlib import Path
from core.locks import maintenance_lock
from core.loop.policy import retrain_check
from tests.installation import System

home, registry_url, where, nth = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
seen = []

def checkpoint(step):
    if step == where:
        seen.append(step)
        if len(seen) == nth:
            os.kill(os.getpid(), signal.SIGKILL)

def progress(stage, done, total):
    checkpoint(f"{stage}:{done}")

system = System.open(home, registry_url=registry_url)
with maintenance_lock(system.registry, "retrain"):  # as every retrain runs: under the lock
    retrain_check(system.settings, system.registry, system.store, checkpoint=checkpoint,
                  progress=progress)
"""

KILL_POINTS = [
    ("retrain:run-opened", 1),
    ("move:object-moved", 5),
    ("retrain:photos-moved", 1),
    ("train:4", 1),
    ("retrain:candidate-trained", 1),
    ("retrain:gated", 1),
]


def finish_with_the_command(system: System) -> None:
    """A plain ``classifi retrain-check``, as a user would type it after the crash."""
    registry, backbone = system.settings.registry_url, system.settings.backbone
    settings = {"REGISTRY_URL": registry, "BACKBONE": backbone}
    finished = run_classifi(system.settings.home, "retrain-check", settings=settings)
    assert finished.returncode == 0, finished.stderr[-2000:]


def wait_for_the_lock_to_go(system: System) -> None:
    """PostgreSQL ends a dead client's backend, and its advisory lock, a moment after."""
    deadline = time.monotonic() + 30
    while lock_holder(system.registry) is not None:
        assert time.monotonic() < deadline, f"still held: {lock_holder(system.registry)}"
        time.sleep(0.05)


# Each kill point once on SQLite and every other one on PostgreSQL, finished in turn by the
# command and by the worker.
FINISHERS = ("command", "worker")


@pytest.mark.parametrize(
    ("registry", "finisher", "where", "nth"),
    [("sqlite", FINISHERS[i % 2], *point) for i, point in enumerate(KILL_POINTS)]
    + [
        pytest.param("postgresql", FINISHERS[i % 2], *point, marks=pytest.mark.integration)
        for i, point in enumerate(KILL_POINTS[1::2])
    ],
)
def test_retrain_survives_sigkill(
    make_system, fresh_photos, request, registry: str, finisher: str, where: str, nth: int
) -> None:
    overrides = (
        {} if registry == "sqlite" else {"registry_url": request.getfixturevalue("postgres_url")}
    )
    system: System = make_system(**overrides)
    # A worker that is running before the crash and keeps running after it.
    worker = build_tasks(system.settings)
    scheduled = worker.huey.execute(worker.retrain_check.s())
    assert not scheduled["due"], scheduled
    submit_and_approve(system, fresh_photos["dandelion"][:5] + fresh_photos["grass"][:5])

    killed = subprocess.run(
        [sys.executable, "-c", KILLER, str(system.settings.home), system.settings.registry_url,
         where, str(nth)],
        cwd=REPO_ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        timeout=600,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert_nothing_lost(system)
    # The killed holder's lock is gone: the next check takes it, with no flag and no restart.
    if finisher == "command":
        finish_with_the_command(system)
    else:
        wait_for_the_lock_to_go(system)
        outcome = worker.huey.execute(worker.retrain_check.s())
        assert outcome["due"] and outcome["candidate_version"] is not None, outcome
    worker.app.close()
    assert_retrained_once(system)
