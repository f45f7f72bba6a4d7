"""Embedding speed of every backbone on every runtime and precision, side by side in one run.

For each backbone, each runtime and precision installed here (torch, ONNX Runtime,
OpenVINO; fp32, bf16, int8) gets two rates at one batch size:

- end to end: JPEG bytes to embeddings, decoding and preprocessing included (they run on a
  thread, overlapping the network, as training and prediction run them);
- network only: pre-made input tensors.

"min cos" is the lowest cosine against torch fp32 over the photos, "parity" whether that
keeps the gate (>= 0.999). Ratios are against torch fp32 of the same run. Without the
official DINOv2 weights, DINOv2 runs on random weights in the official layout: the speed is
the same, and parity is measured on those weights.

--large makes 12-megapixel copies of the photos (in a temp dir, never kept) and adds the
decoding comparison: a full decode then preprocessing, against the reduced-scale decode
training and prediction use.

    .venv/bin/python bench/embed.py [--dataset DIR] [--limit N] [--batch-size 8]
        [--threads N] [--backbones efficientnet_lite0 dinov2_vits14] [--large]
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

from core.config import Settings, load_settings  # noqa: E402
from core.imaging import decode_stored  # noqa: E402
from core.model.backbone import Backbone  # noqa: E402
from core.model.backbones import (  # noqa: E402
    BACKBONE_IDS,
    DINOV2,
    backbone_module,
    dinov2,
    ensure_export,
)
from core.model.runtimes import TORCH, Network, kind, runtime_module  # noqa: E402
from core.model.runtimes.files import cosines, writable_dir  # noqa: E402
from core.model.runtimes.selection import COSINE_MIN  # noqa: E402

DEFAULT_DATASET = ROOT.parent / "shared" / "datasets" / "dandelion-grass"
LARGE_SIZE = (4000, 3000)  # 12 MP, a phone photo
REPEATS = 2  # each rate is the best of this many runs


def random_dinov2_checkpoint(directory: Path) -> Path:
    """Random ViT-S/14 weights in the official checkpoint layout (518 px, mask_token).

    Every tensor is randomised, layer scales included (at their init, 1e-5, the blocks would
    add nothing and any precision would look exact)."""
    import timm
    import torch

    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("gamma") or ("norm" in name and name.endswith("weight")):
                tensor.uniform_(0.5, 1.5)
            else:
                tensor.normal_(0.0, 0.05)
    state = {**model.state_dict(), "mask_token": torch.zeros(1, model.embed_dim)}
    path = directory / dinov2.FILENAME
    torch.save(state, path)
    return path


def settings_for(backbone_id: str, settings: Settings, scratch: Path) -> tuple[Settings, str]:
    if backbone_id == DINOV2 and dinov2.weights_path(settings) is None:
        weights = random_dinov2_checkpoint(scratch)
        return settings.model_copy(update={"dinov2_weights": weights}), "random init"
    return settings, "pretrained"


def rate(run: Callable[[], object], images: int, repeats: int = 1) -> float:
    """Images per second of ``run``, the best of ``repeats`` (other load only slows)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return images / best


def large_copies(paths: list[Path], folder: Path) -> list[bytes]:
    """12 MP JPEG copies of ``paths`` (quality 90, as a phone saves them)."""
    copies = []
    for index, path in enumerate(paths):
        with Image.open(path) as photo:
            big = photo.convert("RGB").resize(LARGE_SIZE, Image.Resampling.BICUBIC)
        target = folder / f"{index:04d}.jpg"
        big.save(target, "JPEG", quality=90)
        copies.append(target.read_bytes())
    return copies


def full_decode(data: bytes) -> Image.Image:
    """What decoding cost before reduced-scale decoding: every pixel of the photo."""
    with Image.open(io.BytesIO(data)) as opened:
        opened.load()
        return ImageOps.exif_transpose(opened).convert("RGB")


def run_row(
    backbone_id: str,
    settings: Settings,
    runtime_id: str,
    precision: str,
    photos: list[bytes],
    batch_size: int,
) -> tuple[float, float, np.ndarray]:
    """One runtime and precision (in a child process): end-to-end and network-only rates,
    and the embeddings of the photos."""
    module = backbone_module(backbone_id)
    export = ensure_export(backbone_id, settings)
    network = Network(module.ID, export.onnx, writable_dir(settings), module, settings)
    preprocessing = module.PREPROCESSING
    engine = runtime_module(runtime_id).load(network, precision, settings.inference_threads)
    backbone = Backbone(
        module.ID,
        module.DIM,
        preprocessing,
        engine,
        runtime=runtime_id,
        precision=precision,
        weights=str(export.onnx),
        weights_sha256=str(export.record["weights_sha256"]),
        accepted_kinds=frozenset(),
        reason="bench",
    )
    tensors = np.stack([preprocessing(decode_stored(data)) for data in photos])
    for _ in range(3):  # warm-up: first runs allocate and tune
        backbone.run(tensors[:batch_size])
    out: list[np.ndarray] = []
    whole = rate(
        lambda: out.extend(backbone.embed_batches(photos, batch_size, load=decode_stored)),
        len(photos),
        REPEATS,
    )
    network_photos = min(len(photos), 10 * batch_size)
    bare = rate(
        lambda: [
            backbone.run(tensors[start : min(start + batch_size, network_photos)])
            for start in range(0, network_photos, batch_size)
        ],
        network_photos,
        REPEATS,
    )
    return whole, bare, np.concatenate(out[: len(photos)])


def bench_backbone(
    backbone_id: str, settings: Settings, photos: list[bytes], batch_size: int, note: str
) -> None:
    """Every runtime and precision installed here, each in a child process of its own (a
    runtime that crashes natively costs its row, not the run), torch fp32 first."""
    ensure_export(backbone_id, settings)  # made once, here; the children find it
    print(f"\n{backbone_id} ({note}), batch {batch_size}, {len(photos)} photos, "
          f"threads {settings.inference_threads}")  # fmt: skip
    print(
        f"{'runtime':<20}{'end to end':>12}{'network':>10}{'e2e/net':>9}"
        f"{'x torch':>9}{'min cos':>10}  parity"
    )
    reference: np.ndarray | None = None
    torch_whole = 0.0
    context = multiprocessing.get_context("spawn")
    for runtime_id in (TORCH, "onnxruntime", "openvino"):
        runtime = runtime_module(runtime_id)
        if not runtime.available():
            continue
        for precision in runtime.precisions():
            name = kind(runtime_id, precision)
            try:
                with ProcessPoolExecutor(1, mp_context=context) as pool:
                    whole, bare, embeddings = pool.submit(
                        run_row, backbone_id, settings, runtime_id, precision, photos, batch_size
                    ).result()
            except BrokenProcessPool:
                print(f"{name:<20}  crashed (a fault inside the runtime)")
                continue
            if reference is None:  # torch fp32 runs first
                reference, torch_whole = embeddings, whole
            worst = float(cosines(embeddings, reference).min())
            verdict = "yes" if worst >= COSINE_MIN else "no"
            print(
                f"{name:<20}{whole:>10.1f}/s{bare:>8.1f}/s{whole / bare:>9.0%}"
                f"{whole / torch_whole:>8.2f}x{worst:>10.5f}  {verdict}",
                flush=True,
            )


def bench_decoding(photos: list[bytes], settings: Settings) -> None:
    preprocessing = backbone_module(BACKBONE_IDS[0]).PREPROCESSING
    full = rate(lambda: [preprocessing(full_decode(data)) for data in photos], len(photos), REPEATS)
    reduced = rate(
        lambda: [preprocessing(decode_stored(data)) for data in photos], len(photos), REPEATS
    )
    print(f"\n12 MP JPEG, decode and preprocess, {len(photos)} photos, one thread")
    print(f"{'full decode':<28}{full:>8.1f}/s")
    print(f"{'reduced-scale decode':<28}{reduced:>8.1f}/s  ({reduced / full:.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="label folders")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N photos")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="inference threads")
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONE_IDS))
    parser.add_argument("--large", action="store_true", help="also on 12 MP copies")
    args = parser.parse_args()

    paths = sorted(args.dataset.glob("*/*.jpg"))[: args.limit]
    with tempfile.TemporaryDirectory() as scratch:
        overrides = {"home": Path(scratch) / "home", "inference_threads": args.threads}
        settings = load_settings(os.environ, overrides=overrides)
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        photos = {"shared photos": [path.read_bytes() for path in paths]}
        if args.large:
            folder = Path(scratch) / "large"
            folder.mkdir()
            photos["12 MP copies"] = large_copies(paths, folder)
        for backbone_id in args.backbones:
            backbone_settings, note = settings_for(backbone_id, settings, Path(scratch))
            for name, datas in photos.items():
                bench_backbone(
                    backbone_id, backbone_settings, datas, args.batch_size, f"{note}, {name}"
                )
        if args.large:
            bench_decoding(photos["12 MP copies"], settings)


if __name__ == "__main__":
    main()
