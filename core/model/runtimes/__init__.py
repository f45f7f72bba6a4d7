"""Inference runtimes, chosen from a table by id, one module each (like the backbones):

- ``torch``: the reference (and the exporter); needs torch and the backbone's weights;
- ``onnxruntime`` and ``openvino``: run the backbone's exported ONNX file, without torch.

Each module offers ``ID``, ``available()``, ``precisions()`` (those this
machine can run) and ``load(network, precision, threads)``, which returns an :class:`Engine`.
Modules are imported on first use, so naming a runtime imports nothing heavy.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Protocol

import numpy as np

from core.config import Settings
from core.errors import ConfigError, ModelError

TORCH, ONNXRUNTIME, OPENVINO = "torch", "onnxruntime", "openvino"
AUTO = "auto"
FP32, BF16, INT8 = "fp32", "bf16", "int8"

#: id -> the module that runs it.
RUNTIMES = {
    TORCH: "core.model.runtimes.torch_eager",
    ONNXRUNTIME: "core.model.runtimes.onnxruntime_cpu",
    OPENVINO: "core.model.runtimes.openvino_cpu",
}
RUNTIME_IDS = tuple(RUNTIMES)
#: The runtimes of the exported file: ``auto`` chooses among them, so a process that only
#: predicts never loads torch (it was slower than both in every measurement on CPU).
EXPORTED_RUNTIMES = (ONNXRUNTIME, OPENVINO)
#: What every embedding is compared against.
REFERENCE = f"{TORCH}/{FP32}"


def kind(runtime: str, precision: str) -> str:
    """How an embedding was computed, as recorded with it: ``"openvino/bf16"``."""
    return f"{runtime}/{precision}"


class Engine(Protocol):
    """A backbone's network compiled for one runtime and precision."""

    def run(self, batch: np.ndarray) -> np.ndarray:
        """An NCHW float32 batch to float32 embeddings ``(N, dim)``."""

    def run_with_features(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The embeddings and, from the same pass, the last feature map ``(N, C, H, W)``
        (:mod:`core.model.runtimes.feature_map`); ModelError for a file exported without it."""


def no_feature_map(network_file: Path) -> ModelError:
    return ModelError(
        f"{network_file} was exported before heatmaps and has no feature map: run "
        "`classifi export --format runtimes` where torch is installed (or retrain) to make "
        "the current file."
    )


@dataclass(frozen=True)
class Network:
    """What a runtime needs to build an engine: the exported file and, for torch, the module
    that builds the torch network (``network(settings)`` of a backbone module)."""

    backbone_id: str
    onnx: Path
    #: Where derived files (a quantised copy, a compiled-model cache) may be written.
    scratch: Path
    backbone_module: ModuleType
    settings: Settings


def installed(package: str) -> bool:
    """Whether ``package`` can be imported here, without importing it."""
    try:
        return importlib.util.find_spec(package) is not None
    except ImportError:  # an import hook that refuses it: as good as absent
        return False


def runtime_module(runtime_id: str) -> ModuleType:
    if runtime_id not in RUNTIMES:
        raise ConfigError(
            f"Unknown runtime {runtime_id!r}: use one of {', '.join((AUTO, *RUNTIME_IDS))}."
        )
    return importlib.import_module(RUNTIMES[runtime_id])


@functools.cache
def limit_numpy_blas_to_one_thread() -> None:
    """numpy's BLAS on one thread in this process, from the first engine on. Its products
    here are small (a head, the k nearest training photos), and its idle threads spin for a
    while after each one, taking the cores from the runtime's threads: one thread made
    classification a third faster (bench/serve.py)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")
