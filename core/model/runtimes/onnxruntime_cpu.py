"""The ``onnxruntime`` runtime: the exported file on ONNX Runtime's CPU provider, in fp32 or
int8 (dynamic quantisation of the weights, made once beside the file)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from core.model.runtimes import FP32, INT8, ONNXRUNTIME, Network, installed, no_feature_map
from core.model.runtimes.files import atomic_write

ID = ONNXRUNTIME


def available() -> bool:
    return installed("onnxruntime")


def precisions() -> tuple[str, ...]:
    # The int8 copy is made by ONNX Runtime's quantiser, which needs the onnx package.
    return (FP32, INT8) if installed("onnx") else (FP32,)


class OnnxRuntimeEngine:
    def __init__(self, session: Any, path: Path) -> None:
        self._session = session
        self._path = path
        self._input = session.get_inputs()[0].name
        self._outputs = [output.name for output in session.get_outputs()]

    def run(self, batch: np.ndarray) -> np.ndarray:
        out: np.ndarray = self._session.run(self._outputs[:1], {self._input: batch})[0]
        return out

    def run_with_features(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(self._outputs) < 2:
            raise no_feature_map(self._path)
        embedding, features = self._session.run(self._outputs[:2], {self._input: batch})
        return embedding, features


def _quantised(network: Network) -> Path:
    """The int8 copy of the exported file, made on first use (atomically) in the scratch dir."""
    target = network.scratch / f"{network.onnx.stem}.ort-int8.onnx"
    if not target.is_file():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        network.scratch.mkdir(parents=True, exist_ok=True)
        # The quantiser logs a line per tensor and advice on the root logger; once per export.
        logging.disable(logging.WARNING)
        try:
            atomic_write(
                target,
                lambda path: quantize_dynamic(network.onnx, path, weight_type=QuantType.QInt8),
            )
        finally:
            logging.disable(logging.NOTSET)
    return target


def session(path: Path, threads: int | None) -> Any:
    """An ONNX Runtime CPU session on ``path`` (also used to check an export)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or 0  # 0: one per physical core
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: no warnings about unused initialisers
    # Idle threads sleep instead of spinning: the next batch is decoded on this machine's
    # cores meanwhile.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )


def load(network: Network, precision: str, threads: int | None) -> OnnxRuntimeEngine:
    path = _quantised(network) if precision == INT8 else network.onnx
    return OnnxRuntimeEngine(session(path, threads), network.onnx)
