"""The exported backbone files: made once by torch, found by every process without it.

A backbone is exported to ONNX (``torch.onnx.export``) into ``<home>/runtimes/``, under a
name made of its id and a key: the sha256 of its weights file, its preprocessing, the ONNX
opset and :data:`EXPORTER` (the version of this export procedure). Files shipped with an
image or bundle are searched first, in the read-only folders of the setting
``runtime_search_path``. Three files make one export, the sidecar last (it marks the
export complete):

- ``<id>-<key16>.onnx``: the network, preprocessed pixels in, embeddings out, and its last
  feature map as a second output (:mod:`core.model.runtimes.feature_map`, for heatmaps);
- ``<id>-<key16>.probe.npz``: the parity probe, a few photos' resized pixels and their
  torch fp32 embeddings, so any runtime can be checked against torch where torch is absent;
- ``<id>-<key16>.json``: the key's parts, the file's sha256, torch's version and the export
  check (ONNX Runtime fp32 against torch fp32 on the probe).

A file whose sidecar does not match the wanted key, or whose bytes do not match its sha256,
is never used. The torch version is recorded, not keyed: a process without torch could not
compute it, and each export is checked against torch when it is made.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image

from core.config import Settings
from core.errors import ModelError
from core.model.preprocessing import Preprocessing
from core.model.runtimes import FP32, ONNXRUNTIME, TORCH, kind

log = logging.getLogger(__name__)

OPSET = 18
#: Bump when the export procedure changes what it writes: older files become stale.
EXPORTER = "classifi-onnx-2"
#: Earlier procedures whose files still give the same embeddings (no feature map): used
#: where torch is absent and no current file is at hand, so an existing home keeps working.
LEGACY_EXPORTERS = ("classifi-onnx-1",)
INPUT, OUTPUT, FEATURES = "pixels", "embedding", "features"
#: Photos in the parity probe: enough for a stable minimum cosine, few enough to store.
PROBE_SIZE = 32
#: ONNX Runtime fp32 must match torch fp32 this closely on the probe for an export to stand.
EXPORT_MIN_COSINE = 0.99999
EXPORT_COMMAND = "classifi export --format runtimes"


def export_key(
    backbone_id: str,
    weights_sha256: str,
    preprocessing: Preprocessing,
    exporter: str | None = None,  # a legacy exporter's key; the current one by default
) -> str:
    parts = {
        "backbone": backbone_id,
        "weights_sha256": weights_sha256,
        "preprocessing": preprocessing.as_dict(),
        "opset": OPSET,
        "exporter": exporter or EXPORTER,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def writable_dir(settings: Settings) -> Path:
    return settings.home / "runtimes"


def search_dirs(settings: Settings) -> list[Path]:
    """Where exports are looked for: the shipped folders first, then the home's."""
    return [*(path.expanduser() for path in settings.runtime_search_path), writable_dir(settings)]


_hashed: dict[tuple[Path, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """The sha256 of a file, hashed once per version of it (path, size, mtime) per process."""
    stat = path.stat()
    version = (path.resolve(), stat.st_size, stat.st_mtime_ns)
    if version not in _hashed:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        _hashed[version] = digest.hexdigest()
    return _hashed[version]


@dataclass(frozen=True)
class Export:
    """One complete export of a backbone."""

    onnx: Path
    record: dict[str, Any]

    @property
    def key(self) -> str:
        return str(self.record["key"])

    @property
    def stem(self) -> str:
        return self.onnx.stem

    @property
    def probe_path(self) -> Path:
        return self.onnx.with_suffix(".probe.npz")

    @property
    def sidecar(self) -> Path:
        return self.onnx.with_suffix(".json")

    @property
    def has_feature_map(self) -> bool:
        """Whether the file gives the feature map heatmaps are made of (older ones do not)."""
        return FEATURES in self.record.get("outputs", ())

    def probe(self, preprocessing: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
        """(network inputs, torch fp32 embeddings) of the parity probe."""
        with np.load(self.probe_path) as probe:
            return preprocessing.normalised(probe["pixels"]), probe["embeddings"]


def stem_of(backbone_id: str, key: str) -> str:
    return f"{backbone_id}-{key[:16]}"


def find_export(settings: Settings, backbone_id: str, key: str) -> Export | None:
    """The complete, intact export with ``key`` in the search folders, or None."""
    stem = stem_of(backbone_id, key)
    for folder in search_dirs(settings):
        onnx = folder / f"{stem}.onnx"
        sidecar = onnx.with_suffix(".json")
        if not sidecar.is_file():
            continue
        try:
            record = json.loads(sidecar.read_text(encoding="utf-8"))
            intact = (
                record.get("key") == key
                and onnx.with_suffix(".probe.npz").is_file()
                and file_sha256(onnx) == record.get("onnx_sha256")
            )
        except (OSError, ValueError) as exc:
            log.warning("ignoring the runtime files %s: %s", sidecar, exc)
            continue
        if intact:
            return Export(onnx, record)
        log.warning("ignoring %s: stale or damaged (not the export %s)", onnx, key[:16])
    return None


def latest_export(settings: Settings, backbone_id: str) -> Export | None:
    """The most recently made intact export of ``backbone_id`` in the search folders."""
    records = []
    for folder in search_dirs(settings):
        for sidecar in folder.glob(f"{backbone_id}-*.json"):
            if sidecar.name.count(".") == 1:  # not a .selection.json
                try:
                    record = json.loads(sidecar.read_text(encoding="utf-8"))
                    records.append((str(record["created_at"]), str(record["key"])))
                except (OSError, ValueError, KeyError):
                    continue
    for _, key in sorted(records, reverse=True):
        if (found := find_export(settings, backbone_id, key)) is not None:
            return found
    return None


def missing_export_error(settings: Settings, backbone_id: str, key: str) -> ModelError:
    folders = ", ".join(str(folder) for folder in search_dirs(settings))
    return ModelError(
        f"No exported {backbone_id} network ({stem_of(backbone_id, key)}.onnx) in {folders}, "
        "and torch, which makes it, is not installed here. Fix: run "
        f"`{EXPORT_COMMAND}` where torch is installed (the training machine or the image "
        f"build), then copy {writable_dir(settings)} here or point the setting "
        "runtime_search_path (CLASSIFI_RUNTIME_SEARCH_PATH) at the folder it wrote."
    )


def synthetic_probe(size: int, count: int) -> list[Image.Image]:
    """Photo-like stand-ins when no real photos are at hand: smooth colour fields with grain.

    Seeded, so every machine gets the same ones."""
    rng = np.random.default_rng(20240601)
    images = []
    for _ in range(count):
        coarse = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        field = Image.fromarray(coarse).resize((size * 2, size * 2), Image.Resampling.BICUBIC)
        grain = rng.normal(0, 12, (size * 2, size * 2, 3))
        pixels = np.clip(np.asarray(field, np.float64) + grain, 0, 255).astype(np.uint8)
        images.append(Image.fromarray(pixels))
    return images


def atomic_write(target: Path, write: Callable[[Path], object]) -> None:
    """``write(path)`` to a temporary name beside ``target``, then rename: never a partial
    file under the final name."""
    handle, partial = tempfile.mkstemp(dir=target.parent, suffix=target.suffix + ".part")
    os.close(handle)
    try:
        write(Path(partial))
        os.chmod(partial, 0o644)  # shipped in images: readable by whichever user runs them
        os.replace(partial, target)
    finally:
        Path(partial).unlink(missing_ok=True)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two ``(N, dim)`` arrays."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    result: np.ndarray = (a64 * b64).sum(axis=1) / np.maximum(norms, 1e-30)
    return result


def export_backbone(
    settings: Settings,
    module: ModuleType,
    weights_sha256: str,
    probe_photos: Sequence[Image.Image] = (),
) -> Export:
    """Export ``module``'s network with torch into the home's runtimes folder and check it.

    ``probe_photos`` (up to :data:`PROBE_SIZE` are kept) become the parity probe; without
    them it is made of synthetic images, and the record says so.
    """
    import torch

    from core.model.runtimes import onnxruntime_cpu

    preprocessing: Preprocessing = module.PREPROCESSING
    key = export_key(module.ID, weights_sha256, preprocessing)
    folder = writable_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    onnx = folder / f"{stem_of(module.ID, key)}.onnx"
    log.info("exporting %s to %s (once per weights and export version)", module.ID, onnx)

    from core.model.runtimes.feature_map import with_feature_map

    network = with_feature_map(module.network(settings))
    photos = list(probe_photos)[:PROBE_SIZE]
    source = "photos" if photos else "synthetic"
    if not photos:
        photos = synthetic_probe(preprocessing.size, PROBE_SIZE)
    pixels = np.stack([preprocessing.resized(photo) for photo in photos])
    inputs = preprocessing.normalised(pixels)
    with torch.inference_mode():
        reference = network(torch.from_numpy(inputs))[0].float().numpy()

    def write_onnx(path: Path) -> None:
        example = torch.from_numpy(inputs[:2])
        batch = torch.export.Dim("batch", min=1, max=4096)
        torch.onnx.export(
            network,
            (example,),
            str(path),
            input_names=[INPUT],
            output_names=[OUTPUT, FEATURES],
            opset_version=OPSET,
            dynamo=True,
            dynamic_shapes=({0: batch},),
            external_data=False,
            verbose=False,
        )

    atomic_write(onnx, write_onnx)
    exported = onnxruntime_cpu.session(onnx, settings.inference_threads).run(
        [OUTPUT], {INPUT: inputs}
    )[0]
    worst = float(cosines(reference, exported).min())
    if worst < EXPORT_MIN_COSINE:
        onnx.unlink(missing_ok=True)
        raise ModelError(
            f"The ONNX export of {module.ID} does not match torch (minimum cosine {worst:.6f} "
            f"< {EXPORT_MIN_COSINE}): nothing was kept. Report this with torch's version "
            f"({torch.__version__})."
        )

    def write_probe(path: Path) -> None:
        with path.open("wb") as handle:
            np.savez_compressed(handle, pixels=pixels, embeddings=reference)

    atomic_write(onnx.with_suffix(".probe.npz"), write_probe)
    record = {
        "key": key,
        "backbone": module.ID,
        "dim": int(reference.shape[1]),
        "weights_sha256": weights_sha256,
        "preprocessing": preprocessing.as_dict(),
        "opset": OPSET,
        "exporter": EXPORTER,
        "torch": str(torch.__version__),
        "input": INPUT,
        "output": OUTPUT,
        "outputs": [OUTPUT, FEATURES],
        "onnx_sha256": file_sha256(onnx),
        "probe": {"source": source, "photos": len(photos)},
        "export_check": {
            "runtime": kind(ONNXRUNTIME, FP32),
            "against": kind(TORCH, FP32),
            "min_cosine": worst,
        },
        "created_at": datetime.now(UTC).isoformat(),
    }
    atomic_write(
        onnx.with_suffix(".json"),
        lambda path: path.write_text(json.dumps(record, indent=2), encoding="utf-8"),
    )
    return Export(onnx, record)
