"""The ``openvino`` runtime: the exported file compiled by OpenVINO for the CPU, in fp32 or,
where the CPU computes in bf16 (AVX-512 BF16, AMX), bf16. Compiled models are cached in the
scratch dir, so a process after the first starts faster."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from core.model.runtimes import BF16, FP32, OPENVINO, Network, installed

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
    def __init__(self, compiled: Any) -> None:
        self._compiled = compiled
        self._local = threading.local()  # an infer request serves one thread at a time

    def run(self, batch: np.ndarray) -> np.ndarray:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        out: np.ndarray = request.infer({0: batch})[0]
        return np.array(out, dtype=np.float32)


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
    return OpenVinoEngine(core.compile_model(str(network.onnx), "CPU", config))
