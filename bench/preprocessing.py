"""Compare preprocessing options for the offline backbone by held-out accuracy on the photos.

For each option: embed the shared photos with efficientnet_lite0, then train a linear head
(Adam, lr 0.003, full batch) on stratified seeded 70/30 splits and report the validation
accuracy (mean and worst over the seeds). DINOv2 is not compared: no real weights are
available here, and a random-init network says nothing about accuracy.

    .venv/bin/python bench/preprocessing.py [--dataset DIR] [--seeds 5] [--steps 300]
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.config import load_settings  # noqa: E402
from core.imaging import decode_stored  # noqa: E402
from core.model.backbone import Backbone  # noqa: E402
from core.model.backbones import EFFICIENTNET_LITE0, efficientnet_lite0, get_backbone  # noqa: E402
from core.model.preprocessing import HALF, IMAGENET_MEAN, IMAGENET_STD, Preprocessing  # noqa: E402

DEFAULT_DATASET = ROOT.parent / "shared" / "datasets" / "dandelion-grass"


def stratified_split(
    labels: torch.Tensor, validation_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    train, validation = [], []
    for label in labels.unique():
        members = (labels == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        cut = round(len(members) * validation_fraction)
        validation.append(members[:cut])
        train.append(members[cut:])
    return torch.cat(train), torch.cat(validation)


def linear_probe_accuracy(
    features: torch.Tensor, labels: torch.Tensor, seed: int, steps: int
) -> float:
    train, validation = stratified_split(labels, 0.3, seed)
    torch.manual_seed(seed)
    head = torch.nn.Linear(features.shape[1], int(labels.max()) + 1)
    optimizer = torch.optim.Adam(head.parameters(), lr=0.003)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(features[train]), labels[train])
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        predicted = head(features[validation]).argmax(1)
    return float((predicted == labels[validation]).float().mean())


def embed(backbone: Backbone, option: Preprocessing, images: list[Image.Image]) -> torch.Tensor:
    """The network's features under ``option`` (the backbone's own preprocessing bypassed)."""
    with torch.inference_mode():
        features = [
            backbone.forward(
                torch.from_numpy(np.stack([option(image) for image in images[start : start + 32]]))
            )
            for start in range(0, len(images), 32)
        ]
    return torch.cat(features).clone()  # outside inference mode: a normal tensor for autograd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="label folders")
    parser.add_argument("--seeds", type=int, default=5, help="number of 70/30 splits")
    parser.add_argument("--steps", type=int, default=300, help="Adam steps of the linear head")
    args = parser.parse_args()

    paths = sorted(args.dataset.glob("*/*.jpg"))
    names = sorted({path.parent.name for path in paths})
    images = [decode_stored(path.read_bytes()) for path in paths]
    labels = torch.tensor([names.index(path.parent.name) for path in paths])
    print(f"{len(paths)} photos, labels {names}, {args.seeds} seeded 70/30 splits")

    backbone = get_backbone(EFFICIENTNET_LITE0, load_settings({}))
    options = [
        Preprocessing(resize=resize, crop_fraction=fraction, interpolation=interp, mean=m, std=s)
        for (resize, fraction), interp, (m, s) in itertools.product(
            [("squash", 1.0), ("crop", 1.0), ("crop", 0.875)],
            ["bicubic", "bilinear"],
            [(IMAGENET_MEAN, IMAGENET_STD), (HALF, HALF)],
        )
    ]
    print(f"{'resize':<8}{'crop':>6}  {'interp':<9}{'norm':<9}{'mean acc':>9}{'worst':>8}")
    for option in options:
        features = embed(backbone, option, images)
        accuracies = [
            linear_probe_accuracy(features, labels, seed, args.steps) for seed in range(args.seeds)
        ]
        norm = "0.5/0.5" if option.mean == HALF else "imagenet"
        chosen = "  <- chosen" if option == efficientnet_lite0.PREPROCESSING else ""
        print(
            f"{option.resize:<8}{option.crop_fraction:>6.3f}  {option.interpolation:<9}{norm:<9}"
            f"{sum(accuracies) / len(accuracies):>9.3f}{min(accuracies):>8.3f}{chosen}"
        )


if __name__ == "__main__":
    main()
