"""Desktop responsiveness: how fast the main window shows, and whether it freezes while it
classifies dropped photos.

1. Start-up: a fresh Python process opens the main window as ``classifi desktop`` does
   (offscreen). Measured from the process start and from the app's construction to the
   first painted window. The model loads lazily, so this is independent of torch.
2. Drop: 100 photos are dropped on the real main window (offscreen QPA), and a 5 ms
   heartbeat QTimer records the longest gap of the GUI event loop until they are all
   classified. The first round is cold (the model loads during it); the second drops other
   photos on the warm window.

Without ``--home`` a temporary data folder is made and a champion trained in it (ingest of
the first photos of each label, then a training run with the offline efficientnet_lite0).

    .venv/bin/python bench/desktop_responsiveness.py [--home DIR] [--count 100] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

DEFAULT_DATASET = ROOT.parent / "shared" / "datasets" / "dandelion-grass"
HEARTBEAT_MS = 5
STALL_GOAL_MS = 100
STARTUP_GOAL_S = 2.0
IDLE_BASELINE_MS = 3000


def dataset_photos(dataset: Path) -> dict[str, list[Path]]:
    return {
        folder.name: sorted(folder.glob("*.jpg"))
        for folder in sorted(dataset.iterdir())
        if folder.is_dir()
    }


def train_home(home: Path, photos: dict[str, list[Path]], per_label: int) -> None:
    """Ingest the first ``per_label`` photos of each label into ``home`` and train a champion."""
    from core.app import App
    from core.config import load_settings

    source = home.parent / "source"
    for label, paths in photos.items():
        (source / label).mkdir(parents=True)
        for path in paths[:per_label]:
            (source / label / path.name).symlink_to(path)
    settings = load_settings({}, overrides={"home": home, "backbone": "efficientnet_lite0"})
    with App(settings, actor="bench") as app:
        app.ingest(app.list_source(str(source)))
        result = app.train()
    if not result.became_champion:
        raise SystemExit(f"Training in {home} did not produce a champion.")


# Start-up ------------------------------------------------------------------------------------
def startup_probe(home: Path) -> None:
    """Child process: open the main window as desktop.app.run does, report when it is painted.
    time.monotonic() is one clock for every process, so the parent can subtract its own."""
    from PySide6.QtCore import QEventLoop, QThreadPool, QTimer

    from core.config import load_settings
    from desktop.app import create_application, preferences
    from desktop.main_window import MainWindow

    imported = time.monotonic()
    app = create_application([])
    constructed = time.monotonic()
    settings = load_settings(os.environ, overrides={"home": home})
    window = MainWindow(settings, preferences(settings))
    window.show()
    app.processEvents()  # lays out and paints the first frame
    shown = time.monotonic()
    cpu = time.process_time()  # CPU seconds up to the painted window: less load-dependent
    loop = QEventLoop()
    window.champion_changed.connect(lambda _champion: loop.quit())
    QTimer.singleShot(60_000, loop.quit)
    loop.exec()  # until the status bar names the model (the registry is read off-thread)
    ready = time.monotonic()
    print(
        json.dumps(
            {
                "imported": imported,
                "constructed": constructed,
                "shown": shown,
                "cpu": cpu,
                "ready": ready,
            }
        )
    )
    window.close()
    QThreadPool.globalInstance().waitForDone()  # a pool thread alive at exit crashes Python


def measure_startup(home: Path, runs: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {"process": [], "app": [], "cpu": [], "ready": []}
    for _ in range(runs):
        started = time.monotonic()
        answer = subprocess.run(
            [sys.executable, __file__, "--startup-probe", "--home", str(home)],
            capture_output=True,
            text=True,
            check=True,
        )
        times = json.loads(answer.stdout.strip().splitlines()[-1])
        figures["process"].append(times["shown"] - started)
        figures["app"].append(times["shown"] - times["constructed"])
        figures["cpu"].append(times["cpu"])
        figures["ready"].append(times["ready"] - started)
    return figures


# Drop ----------------------------------------------------------------------------------------
class Heartbeat:
    """A 5 ms timer on the GUI thread; the gaps between its ticks are the event loop's stalls."""

    def __init__(self) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.timer = QTimer(interval=HEARTBEAT_MS, timerType=Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._tick)
        self.gaps: list[float] = []
        self.last = 0.0

    def start(self) -> None:
        self.gaps, self.last = [], time.perf_counter()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.gaps.append(now - self.last)
        self.last = now


def drop_on(window, paths: list[Path]) -> None:
    """Send the drag-enter, move and drop events a file manager sends."""
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
    from PySide6.QtWidgets import QApplication

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path)) for path in paths])
    centre = QPointF(window.width() / 2, window.height() / 2)
    args = (Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier(0))
    for event in (QDragEnterEvent(centre, *args), QDragMoveEvent(centre, *args)):
        QApplication.sendEvent(window, event)
    dropped = QDropEvent(centre, *args)
    QApplication.sendEvent(window, dropped)
    if not dropped.isAccepted():
        raise SystemExit("The main window refused the drop.")


def stall_figures(gaps: list[float]) -> dict[str, float]:
    ordered = sorted(gaps)
    return {
        "max_stall_ms": 1000 * ordered[-1],
        "p99_stall_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))],
        "stalls_over_goal": sum(gap * 1000 > STALL_GOAL_MS for gap in ordered),
    }


def classify_rounds(home: Path, rounds: list[list[Path]]) -> list[dict[str, float]]:
    from PySide6.QtCore import QEventLoop, QThreadPool, QTimer

    from core.config import load_settings
    from desktop.app import create_application, preferences
    from desktop.main_window import MainWindow
    from desktop.results import RowState

    app = create_application([])
    settings = load_settings(os.environ, overrides={"home": home})
    window = MainWindow(settings, preferences(settings))
    window.show()
    ready = QEventLoop()
    window.champion_changed.connect(ready.quit)
    ready.exec()
    window.champion_changed.disconnect(ready.quit)
    if window.champion is None:
        raise SystemExit(f"No champion in {home}: train one first (or leave out --home).")

    heartbeat = Heartbeat()
    heartbeat.start()  # the baseline: the same heartbeat while the window idles
    idle = QEventLoop()
    QTimer.singleShot(IDLE_BASELINE_MS, idle.quit)
    idle.exec()
    heartbeat.stop()
    figures = [stall_figures(heartbeat.gaps)]
    for photos in rounds:
        batch_times: list[float] = []
        failures: list[BaseException] = []
        loop = QEventLoop()
        started = time.perf_counter()
        heartbeat.start()
        drop_on(window, photos)
        run = window.run
        run.batch_done.connect(lambda _rows, times=batch_times: times.append(time.perf_counter()))
        run.finished.connect(loop.quit)
        run.failed.connect(failures.append)
        run.failed.connect(loop.quit)
        loop.exec()
        finished = time.perf_counter()
        app.processEvents()  # the last repaint belongs to the run too
        heartbeat.stop()
        if failures:
            raise SystemExit(f"The classification failed: {failures[0]}")
        done = sum(row.state == RowState.DONE for row in window.results.rows[-len(photos) :])
        figures.append(
            {
                "photos": len(photos),
                "classified": done,
                "total_s": finished - started,
                "first_batch_s": batch_times[0] - started if batch_times else float("nan"),
                **stall_figures(heartbeat.gaps),
            }
        )
    window.close()
    QThreadPool.globalInstance().waitForDone()
    return figures


def stall_cells(figure: dict[str, float]) -> tuple[str, str, str]:
    return (
        f"{figure['max_stall_ms']:.0f} ms",
        f"{figure['p99_stall_ms']:.0f} ms",
        str(figure["stalls_over_goal"]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--home",
        type=Path,
        help="a data folder with a champion already (default: train one in a temporary folder)",
    )
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="label folders")
    parser.add_argument("--count", type=int, default=100, help="photos per drop (default 100)")
    parser.add_argument("--rounds", type=int, default=2, help="drops of distinct photos")
    parser.add_argument(
        "--train-per-label", type=int, default=30, help="photos per label to train on"
    )
    parser.add_argument("--startup-runs", type=int, default=3, help="fresh processes to time")
    parser.add_argument("--startup-probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.startup_probe:
        startup_probe(args.home)
        return

    photos = dataset_photos(args.dataset)
    with tempfile.TemporaryDirectory(prefix="classifi-bench-desktop-") as scratch:
        home = args.home
        if home is None:
            home = Path(scratch) / "home"
            print(f"Training a champion on {args.train_per_label} photos per label…", flush=True)
            train_home(home, photos, args.train_per_label)
        # Photos the champion was not trained on (when it was trained here), labels mixed.
        unseen = sorted(
            (path for paths in photos.values() for path in paths[args.train_per_label :]),
            key=lambda path: path.name,
        )
        needed = args.count * args.rounds
        if len(unseen) < needed:
            raise SystemExit(f"{needed} photos needed, {args.dataset} has {len(unseen)} unseen.")
        rounds = [unseen[i * args.count : (i + 1) * args.count] for i in range(args.rounds)]

        startup = measure_startup(home, args.startup_runs)
        drops = classify_rounds(home, rounds)

    print(f"\nStart-up, {args.startup_runs} fresh processes (median / max):")
    for name, key in (
        ("process start → window painted", "process"),
        ("app constructed → window painted", "app"),
        ("CPU time of the process until painted", "cpu"),
        ("process start → model named in status bar", "ready"),
    ):
        values = startup[key]
        print(f"  {name:<44} {statistics.median(values):6.2f} s / {max(values):6.2f} s")
    print(f"  goal: window painted in < {STARTUP_GOAL_S:.0f} s")

    print(f"\nDrops of {args.count} photos (heartbeat every {HEARTBEAT_MS} ms):")
    header = (
        "round",
        "classified",
        "total s",
        "first batch s",
        "photos/s",
        "max stall",
        "p99",
        f"> {STALL_GOAL_MS} ms",
    )
    print("  " + "  ".join(f"{h:>13}" for h in header))
    idle, *rounds_done = drops
    cells = ("idle baseline", "-", "-", "-", "-")
    print("  " + "  ".join(f"{c:>13}" for c in (*cells, *stall_cells(idle))))
    for number, figure in enumerate(rounds_done, 1):
        cells = (
            "1 (cold)" if number == 1 else f"{number} (warm)",
            f"{figure['classified']}/{figure['photos']}",
            f"{figure['total_s']:.2f}",
            f"{figure['first_batch_s']:.2f}",
            f"{figure['classified'] / figure['total_s']:.1f}",
        )
        print("  " + "  ".join(f"{c:>13}" for c in (*cells, *stall_cells(figure))))
    print(f"  goal: max stall < {STALL_GOAL_MS} ms")


if __name__ == "__main__":
    main()
