"""Retraining after new photos: with the embedding cache, against the seed's procedure.

Both retrain on the same photos with the same backbone:
- cached: ``train_model`` as the product runs it. Only the new photos go through the
  backbone; the head trains on cached embeddings, then MLflow, the artifact and the registry
  row are written (all included in the time).
- seed: the specification's loop, 10 epochs that each run the frozen backbone again on
  every training photo (decode, preprocess, forward), then a head step per batch, and one
  pass over the validation photos at the end.

One run each, printed side by side with their ratio. Usage:

    .venv/bin/python bench/retrain.py [--new 10] [--backbone efficientnet_lite0]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.config import Settings
    from core.model.backbone import Backbone
    from core.model.training import LabelledPhoto
    from core.store import ObjectStore

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
DEFAULT_DATASET = REPO_ROOT.parent / "shared" / "datasets" / "dandelion-grass"


def link_photos(photos: list[tuple[str, Path]], folder: Path) -> Path:
    """A label-folder source of symlinks (the photos are never copied)."""
    for label, photo in photos:
        (folder / label).mkdir(parents=True, exist_ok=True)
        (folder / label / photo.name).symlink_to(photo)
    return folder


def seed_procedure(
    settings: Settings,
    store: ObjectStore,
    backbone: Backbone,
    photos: list[LabelledPhoto],
    train: list[int],
    validation: list[int],
) -> float:
    """The seed's training loop; returns the validation accuracy."""
    import torch

    from core.imaging import decode_stored
    from core.model.fitting import frozen_head, trainable_head

    labels = list(settings.labels)
    targets = torch.tensor([labels.index(photo.label) for photo in photos])
    head = trainable_head(backbone.dim, len(labels))
    optimiser = torch.optim.Adam(head.parameters(), lr=settings.learning_rate)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(settings.split_seed)

    def embed(indices: list[int]) -> torch.Tensor:
        images = [decode_stored(store.get(photos[i].object_key)) for i in indices]
        return torch.from_numpy(backbone.embed(images, batch_size=len(images)))

    for _epoch in range(settings.epochs):
        order = [train[i] for i in torch.randperm(len(train), generator=generator).tolist()]
        for start in range(0, len(order), settings.train_batch_size):
            batch = order[start : start + settings.train_batch_size]
            loss = loss_fn(head(embed(batch))[:, 0], targets[batch].float())
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    head.eval()
    probabilities = frozen_head(head, len(labels)).probabilities(embed(validation).numpy())
    return float((probabilities.argmax(axis=1) == targets[validation].numpy()).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="label folders")
    parser.add_argument("--new", type=int, default=10, help="photos added before the retrain")
    parser.add_argument("--backbone", default="efficientnet_lite0", help="backbone id")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from core.app import App
    from core.config import load_settings
    from core.model.backbones import get_backbone
    from core.model.training import training_set, validation_split

    folders = [folder for folder in sorted(args.dataset.iterdir()) if folder.is_dir()]
    base: list[tuple[str, Path]] = []
    new: list[tuple[str, Path]] = []
    for index, folder in enumerate(folders):
        files = [(folder.name, path) for path in sorted(folder.glob("*.jpg"))]
        # The new photos: the last ones of each label, shared out evenly.
        count = args.new // len(folders) + (index < args.new % len(folders))
        base += files[: len(files) - count]
        new += files[len(files) - count :]
    photos = base + new

    with tempfile.TemporaryDirectory(prefix="classifi-bench-") as scratch:
        root = Path(scratch)
        settings = load_settings(
            {}, overrides={"home": root / "home", "backbone": args.backbone, "epochs": args.epochs}
        )
        app = App(settings, actor="bench")
        backbone = get_backbone(args.backbone, settings)

        app.ingest(app.list_source(str(link_photos(base, root / "base"))))
        started = time.perf_counter()
        app.train()  # the model in service before the new photos
        first = time.perf_counter() - started
        app.ingest(app.list_source(str(link_photos(new, root / "new"))))

        passes = backbone.images_embedded
        started = time.perf_counter()
        cached = app.train()
        cached_s = time.perf_counter() - started
        cached_passes = backbone.images_embedded - passes

        everything = training_set(app.registry)
        train, validation = validation_split(
            everything, settings.validation_fraction, settings.split_seed
        )
        passes = backbone.images_embedded
        started = time.perf_counter()
        seed_accuracy = seed_procedure(settings, app.store, backbone, everything, train, validation)
        seed_s = time.perf_counter() - started
        seed_passes = backbone.images_embedded - passes
        app.close()

    print(f"backbone {args.backbone}, {len(photos)} photos ({len(new)} new), {args.epochs} epochs")
    print(f"first training (cold cache, {len(base)} photos):   {first:8.2f} s")
    print(
        f"retrain with the cache:  {cached_s:8.2f} s  backbone passes {cached_passes:5d}  "
        f"validation accuracy {cached.metrics['accuracy']:.3f}"
    )
    print(
        f"seed's procedure:        {seed_s:8.2f} s  backbone passes {seed_passes:5d}  "
        f"validation accuracy {seed_accuracy:.3f}"
    )
    print(f"ratio seed / cached:     {seed_s / cached_s:8.1f}x")


if __name__ == "__main__":
    main()
