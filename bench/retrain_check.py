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

from core.config import load_settings
from core.ingest import ingest, read_source
from core.loop.policy import retrain_check
from core.loop.review import approve
from core.loop.submissions import submit_photo
from core.model.backbones import get_backbone
from core.model.predictor import Predictor
from core.model.training import train_model
from core.registry import Registry
from core.store import open_store

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
    registry, store = Registry(settings.registry_url), open_store(settings)
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
    ingest(read_source(str(source), settings), settings, registry, store)
    train_model(settings, registry, store, actor="bench")
    print(
        f"setup: 300 photos ingested, embedded, champion trained in "
        f"{time.perf_counter() - started:.1f} s"
    )

    predictor = Predictor(settings, registry, store)
    started = time.perf_counter()
    ids = [
        submit_photo(
            settings,
            registry,
            store,
            path.read_bytes(),
            path.parent.name,
            predictor=predictor,
        ).photo_id
        for path in new
    ]
    approve(settings, registry, store, ids, actor="bench")
    print(
        f"10 submissions (each embedded once) and their approval: "
        f"{time.perf_counter() - started:.2f} s"
    )

    backbone = get_backbone(settings.backbone, settings)
    embedded = backbone.images_embedded
    started = time.perf_counter()
    due = retrain_check(settings, registry, store, actor="bench")
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
        idle = retrain_check(settings, registry, store, actor="bench")
        timings.append(time.perf_counter() - started)
    assert not idle.due
    print(
        f"no-op retrain check: median {sorted(timings)[2] * 1000:.1f} ms over 5 "
        f"(min {min(timings) * 1000:.1f} ms): {idle.reason}"
    )
    registry.dispose()
    if args.home is None:
        shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(source, ignore_errors=True)


if __name__ == "__main__":
    main()
