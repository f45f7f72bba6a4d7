"""Embedding speed: images per second of each backbone at batch sizes 1 and 8.

Runs every backbone over the shared photos (decoded beforehand; preprocessing and the forward
pass are timed) and prints a table. Without the official DINOv2 weights on this machine,
DINOv2 runs with random weights saved in the official layout: the speed is the same, the
embeddings are meaningless, and the table says so.

    .venv/bin/python bench/embed.py [--dataset DIR] [--batch-sizes 1 8] [--limit N] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import timm  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from core.config import Settings, load_settings  # noqa: E402
from core.imaging import decode_stored  # noqa: E402
from core.model.backbone import Backbone  # noqa: E402
from core.model.backbones import BACKBONE_IDS, DINOV2, dinov2, get_backbone  # noqa: E402

DEFAULT_DATASET = ROOT.parent / "shared" / "datasets" / "dandelion-grass"


def random_dinov2_checkpoint(directory: Path) -> Path:
    """Random ViT-S/14 weights in the official checkpoint layout (518 px, mask_token)."""
    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False)
    state = {**model.state_dict(), "mask_token": torch.zeros(1, model.embed_dim)}
    path = directory / dinov2.FILENAME
    torch.save(state, path)
    return path


def backbone_for(backbone_id: str, settings: Settings, scratch: Path) -> tuple[Backbone, str]:
    if backbone_id == DINOV2 and dinov2.weights_path(settings) is None:
        random_settings = settings.model_copy(
            update={"dinov2_weights": random_dinov2_checkpoint(scratch)}
        )
        return get_backbone(DINOV2, random_settings), "random init (no official weights here)"
    backbone = get_backbone(backbone_id, settings)
    return backbone, "pretrained"


def images_per_second(backbone: Backbone, images: list[Image.Image], batch_size: int) -> float:
    backbone.embed(images[:batch_size], batch_size=batch_size)  # warm-up, not timed
    start = time.perf_counter()
    backbone.embed(images, batch_size=batch_size)
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="label folders")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--limit", type=int, default=None, help="use only the first N photos")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args()

    overrides = {"torch_threads": args.threads} if args.threads else {}
    settings = load_settings(os.environ, overrides=overrides)
    paths = sorted(args.dataset.glob("*/*.jpg"))[: args.limit]
    images = [decode_stored(path.read_bytes()) for path in paths]
    with tempfile.TemporaryDirectory() as scratch:
        # Built first: building applies settings.torch_threads.
        built = {name: backbone_for(name, settings, Path(scratch)) for name in BACKBONE_IDS}
    print(f"{len(images)} photos from {args.dataset}, torch threads: {torch.get_num_threads()}")
    header = "".join(f"{f'batch {size}':>12}" for size in args.batch_sizes)
    print(f"images per second, preprocessing included\n{'backbone':<20}{'dim':>6}{header}  weights")
    for backbone_id, (backbone, weights) in built.items():
        speeds = [images_per_second(backbone, images, size) for size in args.batch_sizes]
        cells = "".join(f"{speed:>12.1f}" for speed in speeds)
        print(f"{backbone_id:<20}{backbone.dim:>6}{cells}  {weights}")


if __name__ == "__main__":
    main()
