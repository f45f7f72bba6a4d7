"""The ``torch`` runtime: the backbone's torch network itself, the reference every other
runtime is measured against. fp32, or bf16 under autocast where the CPU has bf16 support."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.model.runtimes import BF16, FP32, TORCH, Network, installed

ID = TORCH


def available() -> bool:
    return installed("torch")


def precisions() -> tuple[str, ...]:
    return (FP32, BF16)  # bf16 autocast runs on any CPU; the measurement says if it pays


class TorchEngine:
    def __init__(self, network: Any, precision: str, channels_last: bool) -> None:
        self._network = network
        self._bf16 = precision == BF16
        self._channels_last = channels_last

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.run_with_features(batch)[0]

    def run_with_features(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        tensor = torch.from_numpy(batch)
        if self._channels_last:
            # Depthwise convolutions run about twice as fast on CPU in channels-last layout.
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=self._bf16):
            embedding, features = self._network(tensor)
        return embedding.float().numpy(), features.float().contiguous().numpy()


def load(network: Network, precision: str, threads: int | None) -> TorchEngine:
    import torch

    if threads:
        torch.set_num_threads(threads)
    from core.model.runtimes.feature_map import with_feature_map

    module = with_feature_map(network.backbone_module.network(network.settings))
    channels_last = bool(getattr(network.backbone_module, "CHANNELS_LAST", False))
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    return TorchEngine(module, precision, channels_last)
