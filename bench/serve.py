"""Serving throughput, latency, start-up time and memory on loopback, in one run.

On the 340 shared photos and one champion (EfficientNet-Lite0 by default), one gunicorn
worker each:
- shipped: ``classifi serve`` as shipped (the runtime ``auto`` picks, torch-free;
  concurrent requests share backbone passes in the micro-batcher);
- torch: the same server with ``runtime = torch``, the reference row;
- seed-style: torch with ``batch_max_size=1``, one photo per request and per backbone pass,
  as the seed's FastAPI did;
- offline: the app's ``classify_images`` on batches of 16 in this process (no HTTP).

Each server phase sends photos for ``--seconds`` with 1 and then 16 concurrent clients and
reports throughput, p50/p99 latency and errors; the time from launch to ready; and, for the
shipped server, the worker's RSS after ``--soak-seconds`` of load at 32 clients. The home
is prepared first (ingest, train, backbone export and runtime choice), so that no phase
pays for it. Everything binds 127.0.0.1. Usage:

    .venv/bin/python bench/serve.py [--seconds 10] [--soak-seconds 60] [--home HOME]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import requests

if TYPE_CHECKING:
    from core.app import App

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
DEFAULT_DATASET = REPO_ROOT.parent / "shared" / "datasets" / "dandelion-grass"
CLASSIFI = Path(sys.executable).with_name("classifi")


def bench_app(home: Path, backbone: str, **overrides: object) -> App:
    """The application on ``home`` (imported late: ``sys.path`` gets the repo first)."""
    from core.app import App
    from core.config import load_settings

    settings = load_settings({}, overrides={"home": home, "backbone": backbone, **overrides})
    return App(settings, actor="bench")


def prepare_home(home: Path, dataset: Path, backbone: str) -> None:
    """Ingest the photos and train a champion, unless ``home`` already has one."""
    with bench_app(home, backbone) as app:
        if app.champion() is None:
            print(f"preparing {home}: ingest and train ({backbone}) ...", flush=True)
            app.ingest(app.list_source(str(dataset)))
            app.train()
        app.load_model()  # exports the backbone and chooses the runtime, once per home


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    home: Path, backbone: str, extra_env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], str, float]:
    """The server, its URL and the seconds from launch to ready."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLASSIFI_")}
    env |= {"CLASSIFI_HOME": str(home), "CLASSIFI_BACKBONE": backbone, "HF_HUB_OFFLINE": "1"}
    env |= {"CLASSIFI_LOG_LEVEL": "WARNING", **extra_env}
    # Every client here is one address: the default rate limit would answer most with 429.
    env |= {"CLASSIFI_RATE_LIMIT_PREDICT": "1000000 per minute"}
    process = subprocess.Popen(
        [str(CLASSIFI), "serve", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    launched = time.monotonic()
    url = f"http://127.0.0.1:{port}"
    deadline = launched + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"classifi serve exited with {process.returncode}")
        try:
            if requests.get(f"{url}/health/ready", timeout=5).status_code == 200:
                return process, url, time.monotonic() - launched
        except requests.RequestException:
            pass
        time.sleep(0.05)
    process.kill()
    raise TimeoutError("the server did not become ready in 300 s")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def worker_rss_mb(master: int) -> float:
    """The RSS of the server's (one) gunicorn worker, from /proc."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    for line in Path(f"/proc/{children[0]}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS line")


def load(
    url: str, photos: list[tuple[str, bytes]], clients: int, seconds: float
) -> dict[str, float]:
    """``clients`` threads posting photos for ``seconds``; throughput, latency and errors."""
    stop = threading.Event()

    def client(index: int) -> tuple[list[float], int]:
        session, latencies, errors, position = requests.Session(), [], 0, index
        while not stop.is_set():
            name, data = photos[position % len(photos)]
            started = time.perf_counter()
            try:
                ok = session.post(f"{url}/predict", files={"file": (name, data)}, timeout=120).ok
            except requests.RequestException:
                ok = False
            latencies.append(time.perf_counter() - started)
            errors += not ok
            position += clients
        return latencies, errors

    # Warm up: the first requests pay for lazy initialisation (threads, allocator).
    for name, data in photos[:4]:
        requests.post(f"{url}/predict", files={"file": (name, data)}, timeout=120)
    with ThreadPoolExecutor(max_workers=clients) as pool:
        started = time.perf_counter()
        futures = [pool.submit(client, index) for index in range(clients)]
        time.sleep(seconds)
        stop.set()
        results = [future.result() for future in futures]
        latencies = sorted(latency for times, _ in results for latency in times)
        elapsed = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "errors": sum(errors for _, errors in results),
        "throughput": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
    }


def offline(home: Path, backbone: str, photos: list[tuple[str, bytes]], seconds: float) -> float:
    """Photos per second through the app's batched classification (16 a pass), decode included."""
    with bench_app(home, backbone, embed_batch_size=16) as app:
        app.load_model()
        done, position, started = 0, 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            chunk = [photos[(position + i) % len(photos)][1] for i in range(16)]
            app.classify_images([app.check_photo(data).image for data in chunk])
            done, position = done + len(chunk), position + len(chunk)
        return done / (time.perf_counter() - started)


SERVERS = (
    ("shipped (runtime auto)", {}),
    ("torch", {"CLASSIFI_RUNTIME": "torch"}),
    ("seed-style (torch, batch 1)", {"CLASSIFI_RUNTIME": "torch", "CLASSIFI_BATCH_MAX_SIZE": "1"}),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument(
        "--soak-seconds", type=float, default=60.0, help="load at 32 clients before the RSS"
    )
    parser.add_argument("--home", type=Path, help="a home with a champion (default: a temp one)")
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    photos = [(p.name, p.read_bytes()) for p in sorted(args.dataset.glob("*/*.jpg"))]
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as scratch:
        home = args.home or Path(scratch) / "home"
        prepare_home(home, args.dataset, args.backbone)
        rows: list[tuple[str, int, dict[str, float]]] = []
        started: dict[str, tuple[float, float]] = {}  # name -> (ready s, idle RSS MB)
        soak: dict[str, float] = {}
        for name, env in SERVERS:
            process, url, ready = start_server(home, args.backbone, env)
            started[name] = (ready, worker_rss_mb(process.pid))
            try:
                for clients in (1, 16):
                    print(f"{name}, {clients} client(s) ...", flush=True)
                    rows.append((name, clients, load(url, photos, clients, args.seconds)))
                if not env:
                    print(f"{name}, 32 clients for {args.soak_seconds:g} s ...", flush=True)
                    soak = load(url, photos, 32, args.soak_seconds)
                    soak["rss_mb"] = worker_rss_mb(process.pid)
            finally:
                stop_server(process)
        print("offline App.classify_images, batches of 16 ...", flush=True)
        offline_rate = offline(home, args.backbone, photos, args.seconds)

    print(
        f"\n{len(photos)} photos, backbone {args.backbone}, {os.cpu_count()} CPUs, "
        f"{args.seconds:.0f} s per phase, 1 gunicorn worker\n"
    )
    header = f"{'server':30} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
    print(header)
    for name, clients, r in rows:
        print(
            f"{name:30} {clients:7d} {r['throughput']:8.1f} {r['p50_ms']:8.1f} "
            f"{r['p99_ms']:8.1f} {int(r['errors']):7d}"
        )
    print(f"{'offline batched (no HTTP)':30} {'-':>7} {offline_rate:8.1f}")
    print(f"\n{'server':30} {'ready s':>8} {'idle RSS MB':>12}")
    for name, (ready, rss) in started.items():
        print(f"{name:30} {ready:8.2f} {rss:12.0f}")
    by_row = {(name, clients): r for name, clients, r in rows}
    ratio = by_row[(SERVERS[0][0], 16)]["throughput"] / by_row[("torch", 16)]["throughput"]
    print(
        f"\nshipped at 32 clients for {args.soak_seconds:g} s: {soak['throughput']:.1f} req/s, "
        f"{int(soak['errors'])} errors, worker RSS {soak['rss_mb']:.0f} MB; 16-client "
        f"throughput {ratio:.2f}x the torch row"
    )


if __name__ == "__main__":
    main()
