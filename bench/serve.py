"""Serving throughput and latency on loopback, against offline batching and a seed-style server.

In one run, on the 340 shared photos and one champion (EfficientNet-Lite0 by default):
- micro-batched: ``classifi serve`` as shipped (1 worker; concurrent requests share
  backbone passes, settings batch_max_size / batch_max_delay_ms);
- seed-style: the same server and model code with ``batch_max_size=1``: one photo per
  request, one backbone pass per photo, as the seed's FastAPI did;
- offline: the app's ``classify_images`` on batches of 16 in this process (no HTTP at all).

Each server phase sends photos for ``--seconds`` with 1 and then 16 concurrent clients and
reports throughput and p50/p99 latency. Everything binds 127.0.0.1. Usage:

    .venv/bin/python bench/serve.py [--seconds 10] [--home HOME_WITH_A_CHAMPION]
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


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    home: Path, backbone: str, extra_env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLASSIFI_")}
    env |= {"CLASSIFI_HOME": str(home), "CLASSIFI_BACKBONE": backbone, "HF_HUB_OFFLINE": "1"}
    env |= {"CLASSIFI_LOG_LEVEL": "WARNING", **extra_env}
    process = subprocess.Popen(
        [str(CLASSIFI), "serve", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"classifi serve exited with {process.returncode}")
        try:
            if requests.get(f"{url}/health/ready", timeout=5).status_code == 200:
                return process, url
        except requests.RequestException:
            pass
        time.sleep(0.3)
    process.kill()
    raise TimeoutError("the server did not become ready in 300 s")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def load(
    url: str, photos: list[tuple[str, bytes]], clients: int, seconds: float
) -> dict[str, float]:
    """``clients`` threads posting photos for ``seconds``; throughput and latency figures."""
    stop = threading.Event()

    def client(index: int) -> list[float]:
        session, latencies, position = requests.Session(), [], index
        while not stop.is_set():
            name, data = photos[position % len(photos)]
            started = time.perf_counter()
            response = session.post(f"{url}/predict", files={"file": (name, data)}, timeout=120)
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"{name}: {response.status_code} {response.text}")
            position += clients
        return latencies

    # Warm up: the first requests pay for lazy initialisation (threads, allocator).
    for name, data in photos[:4]:
        requests.post(f"{url}/predict", files={"file": (name, data)}, timeout=120)
    with ThreadPoolExecutor(max_workers=clients) as pool:
        started = time.perf_counter()
        futures = [pool.submit(client, index) for index in range(clients)]
        time.sleep(seconds)
        stop.set()
        latencies = sorted(latency for future in futures for latency in future.result())
        elapsed = time.perf_counter() - started
    return {
        "requests": len(latencies),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
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
        for name, env in (
            ("micro-batched", {}),
            ("seed-style (batch_max_size=1)", {"CLASSIFI_BATCH_MAX_SIZE": "1"}),
        ):
            process, url = start_server(home, args.backbone, env)
            try:
                for clients in (1, 16):
                    print(f"{name}, {clients} client(s) ...", flush=True)
                    rows.append((name, clients, load(url, photos, clients, args.seconds)))
            finally:
                stop_server(process)
        print("offline App.classify_images, batches of 16 ...", flush=True)
        offline_rate = offline(home, args.backbone, photos, args.seconds)

    print(
        f"\n{len(photos)} photos, backbone {args.backbone}, {os.cpu_count()} CPUs, "
        f"{args.seconds:.0f} s per phase, 1 gunicorn worker\n"
    )
    print(f"{'server':32} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'requests':>9}")
    for name, clients, r in rows:
        print(
            f"{name:32} {clients:7d} {r['throughput']:8.1f} {r['p50_ms']:8.1f} "
            f"{r['p99_ms']:8.1f} {int(r['requests']):9d}"
        )
    print(f"{'offline batched (no HTTP)':32} {'-':>7} {offline_rate:8.1f}")


if __name__ == "__main__":
    main()
