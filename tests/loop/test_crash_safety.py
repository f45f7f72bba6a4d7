"""Crash safety: die at every step of a submission, a review move and a retrain (a fault
hook that raises, and real SIGKILLs of a subprocess), restart, and check that no photo was
lost, orphaned or counted twice, no model half-made, and the doctor finds all consistent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.app import App
from core.loop.doctor import check_consistency
from core.loop.moves import UPLOADING
from core.loop.policy import retrain_check
from core.loop.review import approve
from core.loop.submissions import submit_photo
from core.model.versions import list_versions
from core.registry import ModelState, Photo, PhotoStatus, RetrainRun
from core.store import RAW_PREFIX
from tests.installation import System
from tests.loop.conftest import BASE_PER_LABEL, folder_label, submit_and_approve

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

home, where, nth = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
seen = []

def checkpoint(step):
    if step == where:
        seen.append(step)
        if len(seen) == nth:
            os.kill(os.getpid(), signal.SIGKILL)

def progress(stage, done, total):
    checkpoint(f"{stage}:{done}")

system = System.open(home)
with maintenance_lock(system.registry, "retrain"):  # as every retrain runs: under the lock
    retrain_check(system.settings, system.registry, system.store, checkpoint=checkpoint,
                  progress=progress)
"""


@pytest.mark.parametrize(
    ("where", "nth"),
    [("move:object-moved", 5), ("train:4", 1), ("retrain:candidate-trained", 1)],
)
def test_retrain_survives_sigkill(make_system, fresh_photos, where: str, nth: int) -> None:
    system: System = make_system()
    submit_and_approve(system, fresh_photos["dandelion"][:5] + fresh_photos["grass"][:5])
    system.registry.dispose()
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, str(system.settings.home), where, str(nth)],
        cwd=REPO_ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        timeout=600,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    restarted = System.open(system.settings.home)
    assert_nothing_lost(restarted)
    # The killed holder's lock is gone: a plain check takes it, with no flag and no restart.
    with App(restarted.settings, actor="tester") as app:
        outcome = app.retrain_check()
    assert outcome.due and outcome.candidate_version is not None
    assert_retrained_once(restarted)
    restarted.registry.dispose()
