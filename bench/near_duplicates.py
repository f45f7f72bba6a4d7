"""Calibrate the near-duplicate threshold (setting ``near_duplicate_distance``).

Embeds the shared photos once with a backbone, then prints:
- the smallest cosine distances between distinct files of the dataset (its near-duplicates),
- the distances between each photo and altered copies of itself (resized, re-encoded, cropped,
  mirrored, brightened): what a re-submission of the same photo looks like,
- the distribution of distances between distinct photos.

A good threshold lies above the altered copies and the dataset's true duplicates, and below
the distinct photos. ``--save-pairs DIR`` writes the closest pairs side by side to look at.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/near_duplicates.py [--backbone efficientnet_lite0]
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance, ImageOps

from core.config import load_settings
from core.model.backbones import get_backbone
from core.vectors import cosine_distances

THRESHOLDS = (0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.10)
DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "dandelion-grass"


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def alterations(image: Image.Image) -> dict[str, Image.Image]:
    """Copies of one photo that a person would still call 'the same photo'."""
    width, height = image.size
    return {
        "re-encoded q60": jpeg(image, 60),
        "resized 50%": image.resize((width // 2, height // 2), Image.Resampling.BILINEAR),
        "resized 200% q85": jpeg(image.resize((width * 2, height * 2)), 85),
        "cropped 90%": image.crop(
            (width // 20, height // 20, width - width // 20, height - height // 20)
        ),
        "cropped 80%": image.crop(
            (width // 10, height // 10, width - width // 10, height - height // 10)
        ),
        "mirrored": ImageOps.mirror(image),
        "brighter 15%": ImageEnhance.Brightness(image).enhance(1.15),
    }


def same_scene_score(a: Image.Image, b: Image.Image, patch: int = 64) -> float:
    """Best normalized cross-correlation of b's centre patch anywhere in a, over scales and
    mirroring: about 0.7-0.8 for the same scene re-cropped or re-coloured, 0.1-0.3 for two
    different lawns. An independent check of what the embedding distance calls close."""
    gray_b = np.asarray(b.convert("L"), dtype=np.float32)
    top, left = gray_b.shape[0] // 2 - patch // 2, gray_b.shape[1] // 2 - patch // 2
    kernel = torch.from_numpy(gray_b[top : top + patch, left : left + patch].copy())
    kernel = ((kernel - kernel.mean()) / kernel.std())[None, None]
    ones = torch.ones_like(kernel)
    area = float(patch * patch)
    best = 0.0
    for mirrored in (False, True):
        source = ImageOps.mirror(a) if mirrored else a
        for scale in np.linspace(0.6, 1.6, 21):
            size = (int(source.width * scale), int(source.height * scale))
            if min(size) < patch:
                continue
            x = torch.from_numpy(np.asarray(source.convert("L").resize(size), dtype=np.float32))
            x = x[None, None]
            mean = F.conv2d(x, ones) / area
            std = (F.conv2d(x * x, ones) / area - mean * mean).clamp(min=1e-6).sqrt()
            best = max(best, float((F.conv2d(x, kernel) / area / std).max()))
    return best


def quantiles(values: np.ndarray) -> str:
    points = np.quantile(values, [0.0, 0.001, 0.01, 0.05, 0.5])
    return "  ".join(
        f"{name}={value:.4f}"
        for name, value in zip(("min", "p0.1", "p1", "p5", "median"), points, strict=True)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--closest", type=int, default=15, help="closest pairs to print")
    parser.add_argument("--save-pairs", type=Path, help="folder for side-by-side images")
    args = parser.parse_args()

    settings = load_settings({}, overrides={"home": Path("/tmp/classifi-bench-home")})
    backbone = get_backbone(args.backbone, settings)
    paths = sorted(DATASET.glob("*/*.jpg"))
    images = [Image.open(path).convert("RGB") for path in paths]
    started = time.perf_counter()
    vectors = backbone.embed(images, batch_size=settings.embed_batch_size)
    print(f"{backbone.id}: embedded {len(images)} photos in {time.perf_counter() - started:.1f} s")

    distances = cosine_distances(vectors, vectors)
    upper = np.triu_indices(len(paths), k=1)
    pair_distances = distances[upper]
    order = np.argsort(pair_distances)
    print(f"\nThe {args.closest} closest pairs of distinct files:")
    for rank, index in enumerate(order[: args.closest]):
        first, second = upper[0][index], upper[1][index]
        a, b = paths[first], paths[second]
        print(
            f"  {pair_distances[index]:.4f}  {a.parent.name}/{a.name}  {b.parent.name}/{b.name}"
            f"  same-scene score {same_scene_score(images[first], images[second]):.2f}"
        )
        if args.save_pairs:
            args.save_pairs.mkdir(parents=True, exist_ok=True)
            left, right = images[first], images[second].resize(images[first].size)
            canvas = Image.new("RGB", (left.width * 2, left.height))
            canvas.paste(left, (0, 0))
            canvas.paste(right, (left.width, 0))
            canvas.save(args.save_pairs / f"{rank:02d}_{pair_distances[index]:.4f}.png")

    print(f"\nDistinct files, all {len(pair_distances)} pairs: {quantiles(pair_distances)}")
    # A submission is compared with its nearest stored photo: the false-flag rate that matters
    # is how often a photo's nearest *other* photo falls under the threshold.
    np.fill_diagonal(distances, np.inf)
    nearest = distances.min(axis=1)
    for threshold in THRESHOLDS:
        flagged = int((nearest < threshold).sum())
        print(
            f"  threshold {threshold:.2f}: {flagged} of {len(paths)} photos have a neighbour under it"
        )

    rng = np.random.default_rng(0)
    sample = rng.choice(len(images), size=40, replace=False)
    print(f"\nAltered copies of {len(sample)} photos (distance to the original):")
    copy_distances: dict[str, list[float]] = {}
    for index in sample:
        altered = alterations(images[index])
        copies = backbone.embed(list(altered.values()))
        for name, value in zip(
            altered, cosine_distances(copies, vectors[index : index + 1])[:, 0], strict=True
        ):
            copy_distances.setdefault(name, []).append(float(value))
    for name, values in copy_distances.items():
        values_array = np.array(values)
        caught = "  ".join(
            f"<{threshold:.2f}:{(values_array < threshold).mean():4.0%}" for threshold in THRESHOLDS
        )
        print(
            f"  {name:18s} median={np.median(values_array):.4f}  "
            f"max={values_array.max():.4f}  caught {caught}"
        )


if __name__ == "__main__":
    main()
