"""Fan-out: wall time of ``classifi ingest --queue`` and ``classifi reembed --queue`` of the
shared photos with 1 worker against 2 on one Redis, beside the plain (unqueued) command.

Each run starts from an empty home: the ingest stores and registers the 340 photos, the
re-embed embeds all of them with EfficientNet-Lite0. Workers are separate ``classifi worker
--workers 1`` processes (one task at a time each), started and idle before the clock starts;
each loads the backbone on its first part, as a real one does. ``--torch-threads`` sets
torch's threads per worker (default: cores / workers, so two workers do not fight over the
same cores); the plain command uses every core.

    .venv/bin/python bench/fanout.py [--workers 1 2] [--chunk-size 32]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.loop.conftest import link_folder  # noqa: E402
from tests.services import run_redis  # noqa: E402
from tests.worker.conftest import signal_handlers_installed  # noqa: E402

DATASET = ROOT.parent / "shared" / "datasets" / "dandelion-grass"


def environment(home: Path, queue_url: str, torch_threads: int | None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CLASSIFI_")}
    env.update(
        HF_HUB_OFFLINE="1",
        PYTHONPATH=str(ROOT),
        CLASSIFI_HOME=str(home),
        CLASSIFI_QUEUE_URL=queue_url,
        CLASSIFI_BACKBONE="efficientnet_lite0",
        CLASSIFI_RETRAIN_SCHEDULE="0 0 31 2 *",  # never
        CLASSIFI_WORKER_METRICS_PORT="0",
    )
    if torch_threads:
        env["CLASSIFI_TORCH_THREADS"] = str(torch_threads)
    return env


def timed(env: dict[str, str], *args: str) -> tuple[float, dict[str, object]]:
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "classifi", *args, "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - began
    if done.returncode:
        sys.exit(f"classifi {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return elapsed, json.loads(done.stdout)


@contextlib.contextmanager
def workers(count: int, env: dict[str, str], logs: Path) -> Iterator[None]:
    started = [
        subprocess.Popen(
            [sys.executable, "-m", "classifi", "worker", "--workers", "1"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(logs / f"worker{n}.log").open("wb"),
        )
        for n in range(count)
    ]
    try:
        deadline = time.monotonic() + 120
        while not all(signal_handlers_installed(worker.pid) for worker in started):
            if time.monotonic() > deadline or any(w.poll() is not None for w in started):
                sys.exit(f"a worker did not start: see {logs}")
            time.sleep(0.2)
        yield
    finally:
        for worker in started:
            worker.send_signal(signal.SIGINT)
        for worker in started:
            worker.wait(timeout=120)


def run(label: str, count: int, chunk: int, threads: int | None, redis_url: str, tmp: Path) -> None:
    home = tmp / f"home-{label}"
    source = tmp / "source"
    if not source.exists():
        link_folder(
            source,
            {name: sorted((DATASET / name).glob("*.jpg")) for name in ("dandelion", "grass")},
        )
    env = environment(home, redis_url, threads)
    queue = ["--queue", "--chunk-size", str(chunk)] if count else []
    with workers(count, env, tmp) if count else contextlib.nullcontext():
        ingest_s, ingested = timed(env, "ingest", str(source), *queue)
        reembed_s, embedded = timed(env, "reembed", *queue)
    assert ingested["added"] == 340 and embedded["embedded"] == 340, (ingested, embedded)
    print(f"{label:34} {ingest_s:>9.1f} {reembed_s:>10.1f}", flush=True)
    shutil.rmtree(home)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--chunk-size", type=int, default=32)
    parser.add_argument("--torch-threads", type=int, help="per worker (default: cores / workers)")
    args = parser.parse_args()
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed: apt-get install redis-server")
    cores = os.cpu_count() or 1
    with (
        contextlib.contextmanager(run_redis)(binary) as redis_url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        print(f"340 shared photos, {cores} cores, parts of {args.chunk_size}; wall seconds")
        print(f"{'':34} {'ingest':>9} {'re-embed':>10}")
        run("plain command (no queue)", 0, args.chunk_size, None, redis_url, Path(tmp))
        for count in args.workers:
            threads = args.torch_threads or max(1, cores // count)
            label = f"{count} worker(s), {threads} torch thread(s) each"
            run(label, count, args.chunk_size, threads, redis_url, Path(tmp))


if __name__ == "__main__":
    main()
