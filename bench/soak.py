"""Soak: many clients for minutes against one SQLite home shared by every process.

On one embedded home (SQLite registry, folder bucket, SqliteHuey):
- the edge server, ``classifi serve`` with 2 gunicorn workers;
- a worker, ``classifi worker``, whose retrain check runs every minute (at least
  ``retrain_min_new`` approved photos retrain the model, so the champion changes under load);
- the desktop in a process of its own, started as the app starts (``create_application``),
  its real ``LocalBackend`` classifying, submitting and reviewing;
- ``--clients`` HTTP clients in this process, mixing predict (60 %), submit (25 %) and
  review (15 %).

Submissions are shared photos re-encoded at a random quality and crop, so each one is new.
Two reviewers racing for the same photo get a 409: that is counted apart, not as an error.
It prints the requests and errors by kind, the RSS of every process (server, worker, desktop,
clients) with its anonymous and file-backed parts, the photos stored after the warm-up and at
the end, and every "database is locked" in any log. Goals: 0 errors, RSS growth < 10 % after
the warm-up, no "database is locked". It exits non-zero on an error, a "database is locked"
or a process that died (``tests/hardening/test_soak.py`` runs it in a short form).

The warm-up lasts until every process has done each kind of its work once: at least a fifth
of the run (60 s at most) has passed, the worker has finished a retrain that promoted a
champion (its first loads torch and the backbone, which stay: its steady state), and the
server and the desktop have each served a promoted model (their first swap). The home is
prepared (ingest, first training) in a child process, so that no process measured holds a
training it never does here; each process's RSS counts its children (gunicorn's workers
under the server) but not the processes measured apart. Usage:

    .venv/bin/python bench/soak.py [--minutes 10] [--clients 32] [--home HOME]
"""

from __future__ import annotations

import argparse
import io
import logging
import multiprocessing
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing.queues import Queue as QueueType
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import requests
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
DEFAULT_DATASET = REPO_ROOT.parent / "shared" / "datasets" / "dandelion-grass"
CLASSIFI = Path(sys.executable).with_name("classifi")
LOCKED = "database is locked"
SWITCHED = "switched from model version"  # core.model.predictor, when a new champion serves
PROMOTED = "reaches the floor"  # worker.tasks, a retrain check whose candidate was promoted


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def variant(path: Path, rng: random.Random) -> bytes:
    """A new photo from a shared one: cropped a little and re-encoded (a new sha256)."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
    left, top = rng.randint(0, 8), rng.randint(0, 8)
    cropped = rgb.crop((left, top, rgb.width - rng.randint(0, 8), rgb.height - rng.randint(0, 8)))
    buffer = io.BytesIO()
    cropped.save(buffer, format="JPEG", quality=rng.randint(70, 95))
    return buffer.getvalue()


#: /proc/PID/status fields, in MB once read: all resident memory, then its two main parts.
#: Anonymous is private (heaps, arenas: where a leak shows); file-backed is mapped files (the
#: libraries, the vector store's mmap of a growing database), pages the kernel may reclaim.
RESIDENT_FIELDS = {"VmRSS": "total", "RssAnon": "anonymous", "RssFile": "files"}


def resident_mb(pid: int, *, descendants: bool = True) -> dict[str, float]:
    """Resident memory of ``pid`` and (unless told not to) all its descendants, from /proc,
    by part: ``{"total": MB, "anonymous": MB, "files": MB}``."""
    resident, todo = dict.fromkeys(RESIDENT_FIELDS.values(), 0.0), [pid]
    while todo:
        current = todo.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                field, _, value = line.partition(":")
                if field in RESIDENT_FIELDS:
                    resident[RESIDENT_FIELDS[field]] += int(value.split()[0]) / 1024
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        if descendants:
            todo.extend(int(child) for child in children)
    return resident


class Tally:
    """Requests and failures by kind, counted from every thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.expected: Counter[str] = Counter()
        self.examples: dict[str, str] = {}

    def ok(self, kind: str) -> None:
        with self.lock:
            self.done[kind] += 1

    def failed(self, kind: str, why: str) -> None:
        with self.lock:
            self.errors[kind] += 1
            self.examples.setdefault(kind, why[:300])

    def refused_as_expected(self, kind: str) -> None:
        with self.lock:
            self.expected[kind] += 1

    def counts(self) -> dict[str, Counter[str]]:
        return {"done": self.done, "errors": self.errors, "expected": self.expected}

    def add(self, counts: dict[str, Counter[str]], examples: dict[str, str]) -> None:
        """Counts and first errors from another process."""
        with self.lock:
            for name, counter in counts.items():
                getattr(self, name).update(counter)
            for kind, example in examples.items():
                self.examples.setdefault(kind, example)


class LogWatch(logging.Handler):
    """Counts the log records of the desktop's process that mention a locked database, and
    sets ``swapped`` when it serves a new champion."""

    def __init__(self, swapped: EventType) -> None:
        super().__init__(logging.INFO)
        self.locked = 0
        self.swapped = swapped

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage() + (str(record.exc_info[1]) if record.exc_info else "")
        self.locked += LOCKED in text
        if SWITCHED in text:
            self.swapped.set()


def occurrences(log: Path, text: str) -> int:
    return log.read_text(errors="replace").count(text)


def stored(home: Path) -> str:
    """The photos and cached vectors in the home's registry, and its size with the WAL."""
    database = home / "registry.db"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as registry:
        (photos,) = registry.execute("SELECT count(*) FROM plants_data").fetchone()
        (cached,) = registry.execute("SELECT count(*) FROM embeddings").fetchone()
    size = sum(path.stat().st_size for path in home.glob("registry.db*")) / 2**20
    return f"{photos} photos, {cached} vectors, {size:.0f} MB"


def prepare(home: Path, dataset: Path) -> str:
    """Ingest and train once (unless done); a fresh admin token for the review clients."""
    from core.app import App
    from core.config import load_settings

    settings = load_settings({}, overrides={"home": home, "backbone": "efficientnet_lite0"})
    with App(settings, actor="soak") as app:
        if app.champion() is None:
            print(f"preparing {home}: ingest and train ...", flush=True)
            app.ingest(app.list_source(str(dataset)))
            app.train()
        return app.reset_admin_token()


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(CLASSIFI), *args],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # stopped as a group: gunicorn's workers with their master
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def http_client(
    url: str, token: str, photos: list[Path], tally: Tally, until: float, seed: int
) -> None:
    rng = random.Random(seed)
    session = requests.Session()
    admin = {"Authorization": f"Bearer {token}"}
    while time.monotonic() < until:
        roll = rng.random()
        path = rng.choice(photos)
        try:
            if roll < 0.60:
                kind = "predict"
                answer = session.post(f"{url}/predict", files={"file": path.open("rb")}, timeout=60)
            elif roll < 0.85:
                kind = "submit"
                files = {"file": ("photo.jpg", variant(path, rng), "image/jpeg")}
                answer = session.post(
                    f"{url}/submissions", files=files, data={"label": path.parent.name}, timeout=60
                )
            else:
                kind = "review"
                listed = session.get(f"{url}/admin/submissions?limit=5", headers=admin, timeout=60)
                if not listed.ok:
                    answer = listed
                else:
                    pending = listed.json()["submissions"]
                    if not pending:
                        tally.ok(kind)
                        continue
                    chosen = rng.choice(pending)
                    body = {"ids": [chosen["id"]], "action": "approve"}
                    answer = session.post(
                        f"{url}/admin/submissions/review", json=body, headers=admin, timeout=60
                    )
                    if answer.status_code in (404, 409):  # another reviewer was first
                        tally.refused_as_expected(kind)
                        continue
            if answer.ok:
                tally.ok(kind)
            else:
                tally.failed(kind, f"HTTP {answer.status_code}: {answer.text}")
        except requests.RequestException as exc:
            tally.failed(kind, repr(exc))


def desktop_process(
    home: Path,
    photos: list[Path],
    until: float,
    swapped: EventType,
    results: QueueType[dict[str, Any]],
    measured: EventType,
) -> None:
    """The desktop in local mode on the same home, in a process started as the app starts
    its own: classify, submit and review until ``until``; then it sends its counts to
    ``results`` and lives on until its memory is ``measured``."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from desktop.app import create_application

    create_application(["classifi-desktop"])
    watch = LogWatch(swapped)
    logging.getLogger().addHandler(watch)
    logging.getLogger("core.model.predictor").setLevel(logging.INFO)
    tally = Tally()
    try:
        desktop_local(home, photos, tally, until)
    except Exception as exc:  # the start itself failed: counted, and the bench goes on
        tally.failed("desktop start", repr(exc))
    results.put({"counts": tally.counts(), "examples": tally.examples, "locked": watch.locked})
    measured.wait(300)


def desktop_local(home: Path, photos: list[Path], tally: Tally, until: float) -> None:
    """The desktop's local mode: classify, submit and review."""
    from core.config import load_settings
    from core.errors import ClassifiError, Conflict, NotFound
    from core.wire import ReviewAction
    from desktop.backends.local import LocalBackend

    rng = random.Random(7)
    settings = load_settings({}, overrides={"home": home, "backbone": "efficientnet_lite0"})
    backend = LocalBackend(settings)
    if backend.needs_admin_password_choice():
        backend.choose_admin_password("soak-password")
    backend.sign_in("soak-password")
    while time.monotonic() < until:
        roll = rng.random()
        kind = (
            "desktop classify"
            if roll < 0.6
            else "desktop submit"
            if roll < 0.85
            else "desktop review"
        )
        try:
            if kind == "desktop classify":
                batch = [path.read_bytes() for path in rng.sample(photos, 8)]
                answers = backend.classify(batch)
                if any(isinstance(answer, ClassifiError) for answer in answers):
                    raise RuntimeError(f"a shared photo was refused: {answers}")
            elif kind == "desktop submit":
                path = rng.choice(photos)
                backend.submit(variant(path, rng), path.parent.name, source="soak")
            else:
                pending = backend.pending()[:5]
                if pending:
                    backend.review([rng.choice(pending).id], ReviewAction.APPROVE)
            tally.ok(kind)
        except (Conflict, NotFound):
            tally.refused_as_expected(kind)
        except Exception as exc:  # the thread's boundary: every failure is counted
            tally.failed(kind, repr(exc))
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the load lasts")
    parser.add_argument("--clients", type=int, default=32, help="concurrent HTTP clients")
    parser.add_argument("--home", type=Path, help="a home to reuse (default: a new temp one)")
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="label folders")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    work = Path(tempfile.mkdtemp(prefix="classifi-soak-"))
    home = args.home or work / "home"
    spawn = multiprocessing.get_context("spawn")
    # Training imports torch, which would stay in the process that trained.
    with ProcessPoolExecutor(1, mp_context=spawn) as child:
        token = child.submit(prepare, home, args.dataset).result()
    photos = sorted(args.dataset.glob("*/*.jpg"))
    port = free_port()
    env = {
        **os.environ,
        "CLASSIFI_HOME": str(home),
        "CLASSIFI_BACKBONE": "efficientnet_lite0",
        "CLASSIFI_RETRAIN_SCHEDULE": "* * * * *",
        # Every client here is one address and one submitter: the soak loads the stores, not
        # the rate limits or the pending quota.
        **{
            f"CLASSIFI_RATE_LIMIT_{route}": "1000000 per minute"
            for route in ("PREDICT", "SUBMIT", "OTHER")
        },
        "CLASSIFI_MAX_PENDING_PER_SUBMITTER": "1000000",
        "CLASSIFI_WORKER_METRICS_PORT": str(free_port()),  # two soaks can run side by side
    }
    logs = {"server": work / "server.log", "worker": work / "worker.log"}
    server = start(["serve", "--port", str(port), "--workers", "2"], env, logs["server"])
    worker = start(["worker"], env, logs["worker"])
    url = f"http://127.0.0.1:{port}"
    swapped, measured, results = spawn.Event(), spawn.Event(), spawn.Queue()
    desktop: multiprocessing.process.BaseProcess | None = None
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"{url}/health/ready", timeout=5).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"the server did not become ready; see {logs['server']}")
            time.sleep(0.5)

        tally = Tally()
        duration = args.minutes * 60
        started = time.monotonic()
        until = started + duration  # CLOCK_MONOTONIC: the same in the desktop's process
        minimum_warm_up = min(60.0, duration / 5)
        desktop = spawn.Process(
            target=desktop_process,
            args=(home, photos, until, swapped, results, measured),
            name="desktop",
        )
        desktop.start()
        assert desktop.pid is not None
        processes = {
            "server (all workers)": server.pid,
            "worker": worker.pid,
            "desktop": desktop.pid,
            "clients (this)": os.getpid(),
        }

        def measure(pid: int) -> dict[str, float]:  # this process's children are apart
            return resident_mb(pid, descendants=pid != os.getpid())

        print(
            f"soak: {args.clients} clients + the desktop for {args.minutes:g} min on {home}",
            flush=True,
        )
        with ThreadPoolExecutor(args.clients) as pool:
            for number in range(args.clients):
                pool.submit(http_client, url, token, photos, tally, until, number)

            def warmed_up() -> bool:
                return (
                    time.monotonic() - started >= minimum_warm_up
                    and occurrences(logs["worker"], PROMOTED) >= 1
                    and occurrences(logs["server"], SWITCHED) >= 1
                    and swapped.is_set()
                )

            while time.monotonic() < until and not warmed_up():
                time.sleep(1)
            warm_up, warmed = time.monotonic() - started, warmed_up()
            rss_start = {name: measure(pid) for name, pid in processes.items()}
            data_start = stored(home)
        from_desktop = results.get(timeout=300)  # its last batch ends a little after ``until``
        rss_end = {name: measure(pid) for name, pid in processes.items()}
        data_end = stored(home)
        elapsed = time.monotonic() - started
        tally.add(from_desktop["counts"], from_desktop["examples"])
        exited = [
            name
            for name, process in (("server", server), ("worker", worker))
            if process.poll() is not None
        ]
    finally:
        measured.set()
        if desktop is not None:
            desktop.join(60)
            if desktop.is_alive():
                desktop.kill()
        stop(server)
        stop(worker)

    print(f"\n{'kind':<18}{'ok':>9}{'errors':>9}{'409/404':>9}{'per s':>9}")
    for kind in sorted(set(tally.done) | set(tally.errors) | set(tally.expected)):
        print(
            f"{kind:<18}{tally.done[kind]:>9}{tally.errors[kind]:>9}{tally.expected[kind]:>9}"
            f"{tally.done[kind] / elapsed:>9.1f}"
        )
    print(f"{'total':<18}{sum(tally.done.values()):>9}{sum(tally.errors.values()):>9}")
    for kind, example in tally.examples.items():
        print(f"  first {kind} error: {example}")
    if not warmed:
        print("\nthe warm-up never finished (no promoted retrain served by every process)")
    else:
        print(
            f"\nwarm-up: {warm_up:.0f} s (until a retrain had promoted a champion and the "
            "server and the desktop had swapped to one)"
        )
    print(
        f"{'process':<22}{'RSS after warm-up':>18}{'RSS at end':>12}{'growth':>9}"
        f"{'anonymous':>22}{'files':>18}"
    )
    for name in processes:
        before, after = rss_start[name], rss_end[name]
        growth = {part: (after[part] - before[part]) / max(before[part], 1e-9) for part in before}
        print(
            f"{name:<22}{before['total']:>16.0f} MB{after['total']:>9.0f} MB"
            f"{growth['total']:>+9.1%}"
            + "".join(
                f"{before[part]:>7.0f}→{after[part]:.0f} MB {growth[part]:>+6.1%}"
                for part in ("anonymous", "files")
            )
        )
    print(f"registry after warm-up: {data_start}; at end: {data_end}")
    in_logs = {name: occurrences(path, LOCKED) for name, path in logs.items()}
    print(
        f"\n'{LOCKED}': server log {in_logs['server']}, worker log {in_logs['worker']}, "
        f"desktop {from_desktop['locked']}"
    )
    with open(logs["worker"], errors="replace") as log:
        retrains = sum("retrain check by" in line and PROMOTED in line for line in log)
    print(f"retrains that promoted a champion meanwhile: {retrains}; logs in {work}")
    failures = [f"the {name} exited during the soak: see its log" for name in exited]
    if errors := sum(tally.errors.values()):
        failures.append(f"{errors} requests failed")
    if locked := sum(in_logs.values()) + from_desktop["locked"]:
        failures.append(f"'{LOCKED}' {locked} times")
    if failures:
        raise SystemExit("\nsoak failed: " + "; ".join(failures))


if __name__ == "__main__":
    main()
