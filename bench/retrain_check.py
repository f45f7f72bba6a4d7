"""Time the retrain check: with 10 newly validated photos waiting, and with nothing to do.

Builds a throwaway embedded installation (SQLite + local folder) from the shared photos:
300 ingested and embedded, a champion trained; then 10 more submitted and approved. Times:
- the due check (move 10 photos, embed none of them again, train a candidate, gate);
- a no-op check right after (nothing waiting).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/retrain_check.py [--home /tmp/bench-home]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from core.app import App
from core.config import load_settings
from core.model.backbones import get_backbone
from core.wire import ReviewAction

DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "dandelion-grass"
BASE_PER_LABEL = 150


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, help="where to build it (default: a temp dir)")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    home = args.home or Path(tempfile.mkdtemp(prefix="classifi-bench-"))
    shutil.rmtree(home, ignore_errors=True)

    settings = load_settings({}, overrides={"home": home, "backbone": args.backbone})
    app = App(settings, actor="bench")
    source = home.parent / f"{home.name}-source"
    shutil.rmtree(source, ignore_errors=True)
    new = []
    for label in settings.labels:
        (source / label).mkdir(parents=True)
        photos = sorted((DATASET / label).glob("*.jpg"))
        for path in photos[:BASE_PER_LABEL]:
            (source / label / path.name).symlink_to(path)
        new += photos[BASE_PER_LABEL : BASE_PER_LABEL + 5]

    started = time.perf_counter()
    app.ingest(app.list_source(str(source)))
    app.train()
    print(
        f"setup: 300 photos ingested, embedded, champion trained in "
        f"{time.perf_counter() - started:.1f} s"
    )

    started = time.perf_counter()
    ids = [
        app.submit(path.read_bytes(), path.parent.name, source=str(path)).photo_id for path in new
    ]
    app.review(ids, ReviewAction.APPROVE)
    print(
        f"10 submissions (each embedded once) and their approval: "
        f"{time.perf_counter() - started:.2f} s"
    )

    backbone = get_backbone(settings.backbone, settings)
    embedded = backbone.images_embedded
    started = time.perf_counter()
    due = app.retrain_check()
    due_s = time.perf_counter() - started
    print(
        f"retrain check with {due.new_validated} new photos: {due_s:.2f} s "
        f"(candidate v{due.candidate_version}, promoted={due.promoted}, "
        f"photos embedded during it: {backbone.images_embedded - embedded})"
    )
    print(f"  gate: {due.reason}")

    timings = []
    for _ in range(5):
        started = time.perf_counter()
        idle = app.retrain_check()
        timings.append(time.perf_counter() - started)
    assert not idle.due
    print(
        f"no-op retrain check: median {sorted(timings)[2] * 1000:.1f} ms over 5 "
        f"(min {min(timings) * 1000:.1f} ms): {idle.reason}"
    )
    app.close()
    if args.home is None:
        shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(source, ignore_errors=True)


if __name__ == "__main__":
    main()
