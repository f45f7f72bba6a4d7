"""Accuracy you can trust: repeated, seeded, stratified k-fold cross-validation on the shared
photos, for each configuration, on the exported runtimes.

A configuration is a backbone (EfficientNet-Lite0, -Lite2, DINOv2 where its weights are
here), a head option (epochs of the specification's trainer: Adam, lr 0.003, BCE), the
augmented views the head trains on (flips, crops) and test-time averaging (the mean
embedding of a photo and its mirror image: for a linear head, the mean of their logits).
Each (photo, view) goes through the backbone once and is cached in ``--cache``.

Each fold is trained as ``classifi train`` trains: the fold's training photos are split
70/30, the head learns on the 70%, its calibration (temperature, unsure threshold,
out-of-distribution threshold, :mod:`core.model.calibration`) is fitted on the 30%, and the
held-out fold is answered. Printed per configuration: mean and worst-fold accuracy, ECE of
the calibrated answers, the share of held-out photos called unsure and out of distribution,
and img/s (end to end, JPEG bytes to embeddings, on the runtime chosen here; halved by
test-time averaging). Last, per backbone, the out-of-distribution flags on images that are
not plant photos (tests/quality/samples.py).

    .venv/bin/python bench/accuracy.py [--dataset DIR] [--folds 5] [--repeats 2] [--first-seed 0]
        [--backbones efficientnet_lite0 efficientnet_lite2] [--cache DIR] [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from core.config import Settings, load_settings  # noqa: E402
from core.imaging import check_photo, find_photos  # noqa: E402
from core.model.backbone import Backbone  # noqa: E402
from core.model.backbones import (  # noqa: E402
    DINOV2,
    EFFICIENTNET_LITE0,
    EFFICIENTNET_LITE2,
    backbone_module,
    get_backbone,
)
from core.model.calibration import calibrate  # noqa: E402
from core.model.crossval import BATCH_SIZE, LEARNING_RATE, VALIDATION_FRACTION, cross_validate  # noqa: E402
from core.model.fitting import fit_head  # noqa: E402

DEFAULT_DATASET = ROOT.parent / "shared" / "datasets" / "dandelion-grass"
CROP = 0.8  # the centre crop view keeps this share of each side


def _crop(image: Image.Image) -> Image.Image:
    width, height = image.size
    left, top = round(width * (1 - CROP) / 2), round(height * (1 - CROP) / 2)
    return image.crop((left, top, width - left, height - top))


VIEWS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "original": lambda image: image,
    "flip": ImageOps.mirror,
    "crop": _crop,
    "crop+flip": lambda image: ImageOps.mirror(_crop(image)),
}
TRAIN_VIEWS = {
    "none": ("original",),
    "flip": ("original", "flip"),
    "flip+crops": tuple(VIEWS),
}
TEST_TIME = {"off": ("original",), "flip": ("original", "flip")}
EPOCHS = (10, 30)


@dataclass(frozen=True)
class Dataset:
    paths: list[Path]
    targets: np.ndarray
    labels: list[str]


def read_dataset(folder: Path) -> Dataset:
    labels = sorted(child.name for child in folder.iterdir() if child.is_dir())
    paths, targets = [], []
    for index, label in enumerate(labels):
        for path in find_photos([folder / label]):
            paths.append(path)
            targets.append(index)
    return Dataset(paths, np.array(targets), labels)


def embeddings(
    backbone: Backbone, settings: Settings, data: Dataset, cache: Path
) -> dict[str, np.ndarray]:
    """view -> (N, dim) embeddings of every photo, from the cache or computed once."""
    digest = hashlib.sha256("".join(str(p) for p in data.paths).encode()).hexdigest()[:12]
    out = {}
    for view, transform in VIEWS.items():
        file = cache / f"{backbone.id}-{backbone.weights_sha256[:12]}-{digest}-{view}.npy"
        if file.is_file():
            out[view] = np.load(file)
            continue
        images = [transform(check_photo(p.read_bytes(), settings).image) for p in data.paths]
        out[view] = backbone.embed(images, batch_size=32)
        cache.mkdir(parents=True, exist_ok=True)
        np.save(file, out[view])
    return out


def images_per_second(backbone: Backbone, settings: Settings, data: Dataset) -> float:
    """End to end, bytes to embeddings, on 64 photos; the best of two runs."""
    photos = [p.read_bytes() for p in data.paths[:64]]
    best = 0.0
    for _ in range(2):
        start = time.perf_counter()
        backbone.embed([check_photo(b, settings).image for b in photos], batch_size=32)
        best = max(best, len(photos) / (time.perf_counter() - start))
    return best


def non_plant_flags(
    backbone: Backbone, vectors: dict[str, np.ndarray], targets: np.ndarray, n_labels: int
) -> tuple[int, int]:
    """(flagged, total) non-plant images, for a head trained as classifi train trains."""
    from tests.quality.samples import non_plant_images

    learn, validation = train_test_split(
        np.arange(len(targets)), test_size=VALIDATION_FRACTION, stratify=targets, random_state=0
    )
    head, _ = fit_head(
        vectors["original"][learn],
        targets[learn],
        n_labels,
        validation=(vectors["original"][validation], targets[validation]),
        learning_rate=LEARNING_RATE,
        epochs=10,
        batch_size=BATCH_SIZE,
        seed=0,
    )
    calibration = calibrate(
        head, vectors["original"][learn], vectors["original"][validation], targets[validation]
    )
    images = [image for _, image in non_plant_images()]
    flagged = calibration.out_of_distribution(backbone.embed(images))
    return int(flagged.sum()), len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="seed of the first repeat: choose on one range of seeds, confirm on another",
    )
    parser.add_argument(
        "--backbones", nargs="+", default=[EFFICIENTNET_LITE0, EFFICIENTNET_LITE2, DINOV2]
    )
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "classifi-bench")
    parser.add_argument(
        "--quick", action="store_true", help="10 epochs, no crops: the shortest sweep"
    )
    args = parser.parse_args()

    data = read_dataset(args.dataset)
    settings = load_settings({}, overrides={"home": args.cache / "home"})
    print(
        f"{len(data.paths)} photos ({', '.join(data.labels)}), {args.repeats} x stratified "
        f"{args.folds}-fold (seeds {args.first_seed}-{args.first_seed + args.repeats - 1}), each fold trained on 70% of its training photos and calibrated "
        "on 30%\n"
    )
    header = (
        f"{'backbone':<20}{'epochs':>7}  {'train views':<12}{'TTA':<5}{'mean acc':>9}"
        f"{'worst':>7}{'ECE':>7}{'unsure':>8}{'OOD':>6}{'img/s':>7}"
    )
    print(header)
    print("-" * len(header))
    non_plant: dict[str, tuple[int, int]] = {}
    for backbone_id in args.backbones:
        if backbone_id == DINOV2 and backbone_module(DINOV2).weights_path(settings) is None:
            print(f"{DINOV2:<20}  skipped: no official weights on this machine")
            continue
        backbone = get_backbone(backbone_id, settings)
        vectors = embeddings(backbone, settings, data, args.cache)
        rate = images_per_second(backbone, settings, data)
        epochs_options = EPOCHS[:1] if args.quick else EPOCHS
        view_options = {k: v for k, v in TRAIN_VIEWS.items() if not args.quick or k != "flip+crops"}
        for epochs, (views_name, views), (tta_name, tta) in itertools.product(
            epochs_options, view_options.items(), TEST_TIME.items()
        ):
            scores = cross_validate(
                vectors,
                data.targets,
                len(data.labels),
                epochs=epochs,
                train_views=views,
                test_views=tta,
                folds=args.folds,
                repeats=args.repeats,
                first_seed=args.first_seed,
            )
            print(
                f"{backbone_id:<20}{epochs:>7}  {views_name:<12}{tta_name:<5}"
                f"{np.mean(scores.accuracy):>9.3f}{min(scores.accuracy):>7.3f}"
                f"{np.mean(scores.ece):>7.3f}{np.mean(scores.unsure):>8.3f}"
                f"{np.mean(scores.out_of_distribution):>6.3f}{rate / len(tta):>7.1f}",
                flush=True,
            )
        non_plant[f"{backbone_id} ({backbone.kind})"] = non_plant_flags(
            backbone, vectors, data.targets, len(data.labels)
        )
    print("\nOut of distribution on images that are not plant photos (tests/quality/samples.py):")
    for name, (flagged, total) in non_plant.items():
        print(f"  {name}: {flagged} of {total} flagged ({flagged / total:.0%})")


if __name__ == "__main__":
    main()
