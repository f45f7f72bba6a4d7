"""The ``openvino`` runtime: the exported file compiled by OpenVINO for the CPU, in fp32 or,
where the CPU computes in bf16 (AVX-512 BF16, AMX), bf16. Compiled models are cached in the
scratch dir, so a process after the first starts faster."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from core.model.runtimes import BF16, FP32, OPENVINO, Network, installed, no_feature_map

ID = OPENVINO
_PRECISION_HINTS = {FP32: "f32", BF16: "bf16"}


def available() -> bool:
    return installed("openvino")


def _core() -> Any:
    import openvino

    return openvino.Core()


def precisions() -> tuple[str, ...]:
    capabilities = _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return (FP32, BF16) if "BF16" in capabilities else (FP32,)


class OpenVinoEngine:
    def __init__(self, compiled: Any, path: Path) -> None:
        self._compiled = compiled
        self._path = path
        self._local = threading.local()  # an infer request serves one thread at a time

    def _infer(self, batch: np.ndarray) -> Any:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        return request.infer({0: batch})

    def run(self, batch: np.ndarray) -> np.ndarray:
        return np.array(self._infer(batch)[0], dtype=np.float32)

    def run_with_features(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(self._compiled.outputs) < 2:
            raise no_feature_map(self._path)
        results = self._infer(batch)
        return np.array(results[0], dtype=np.float32), np.array(results[1], dtype=np.float32)


def load(network: Network, precision: str, threads: int | None) -> OpenVinoEngine:
    core = _core()
    cache = network.scratch / "openvino-cache"
    cache.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "INFERENCE_PRECISION_HINT": _PRECISION_HINTS[precision],
        "PERFORMANCE_HINT": "LATENCY",
        "CACHE_DIR": str(cache),
    }
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return OpenVinoEngine(core.compile_model(str(network.onnx), "CPU", config), network.onnx)
