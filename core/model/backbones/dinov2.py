"""DINOv2 ViT-S/14, the specification's backbone: timm's ``vit_small_patch14_dinov2`` at 224,
the CLS token after the final norm (384-d).

Its official checkpoint is looked up in the configured file, then the torch hub cache, then
downloaded where allowed; the download is atomic and fails in seconds on a machine with no
network.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, cast

from core.config import Settings
from core.errors import ModelError, WeightsNotFound
from core.model.preprocessing import Preprocessing

if TYPE_CHECKING:
    from timm.models.vision_transformer import VisionTransformer

log = logging.getLogger(__name__)

ID = "dinov2_vits14"
DIM = 384
FILENAME = "dinov2_vits14_pretrain.pth"
URL = f"https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/{FILENAME}"
# An offline machine must fail in seconds, not wait for a network that is not there.
DOWNLOAD_CONNECT_TIMEOUT_S = 5.0
DOWNLOAD_READ_TIMEOUT_S = 60.0
# No real weights here to judge by, so timm's defaults for it: bicubic, ImageNet mean/std,
# shorter side to 224 then a full centre crop.
PREPROCESSING = Preprocessing(resize="crop", interpolation="bicubic")


def hub_checkpoint(settings: Settings) -> Path:
    assert settings.torch_home is not None  # filled by Settings
    return settings.torch_home / "hub" / "checkpoints" / FILENAME


def weights_path(settings: Settings) -> Path | None:
    """Where the official checkpoint is on this machine, or None.

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
    cached = hub_checkpoint(settings)
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


def find_or_download(settings: Settings) -> Path:
    found = weights_path(settings)
    if found is not None:
        return found
    cached = hub_checkpoint(settings)
    download_note = "download not allowed (allow_weight_download = false)"
    if settings.allow_weight_download:
        try:
            _download(URL, cached)
            return cached
        except Exception as exc:  # any network failure ends in the one clear error below
            download_note = f"download from {URL} failed: {exc}"
    raise WeightsNotFound(
        f"No DINOv2 weights ({FILENAME}) on this machine. Looked in: the setting "
        f"dinov2_weights (not set); the torch hub cache {cached}; {download_note}. "
        f"Fix: download {URL} and either put it at {cached} or point "
        "CLASSIFI_DINOV2_WEIGHTS (setting dinov2_weights) at it; or use the offline backbone "
        "with backbone = 'efficientnet_lite0' (CLASSIFI_BACKBONE=efficientnet_lite0)."
    )


def timm_network() -> VisionTransformer:
    import timm

    # global_pool "token": forward gives the CLS token after the final norm.
    return cast(
        "VisionTransformer",
        timm.create_model(
            "vit_small_patch14_dinov2",
            pretrained=False,
            img_size=PREPROCESSING.size,
            num_classes=0,
            global_pool="token",
        ),
    )


def load_checkpoint(model: VisionTransformer, path: Path) -> None:
    """Load the official checkpoint (original key names, 518 px) strictly into ``model``."""
    import torch
    from timm.models.vision_transformer import checkpoint_filter_fn

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"Cannot read the DINOv2 weights {path}: {exc}") from exc
    if not isinstance(state, dict) or "cls_token" not in state or "mask_token" not in state:
        raise ModelError(
            f"{path} is not the official DINOv2 checkpoint (no cls_token/mask_token): "
            f"download {URL}."
        )
    # mask_token only serves masked-image pre-training; the filter drops it (its presence is
    # how timm recognises the DINOv2 layout), resamples pos_embed from 37x37 to the model's grid.
    filtered = checkpoint_filter_fn(dict(state), model)
    try:
        model.load_state_dict(filtered, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{path} does not fit ViT-S/14: {exc}") from exc


def weights_file(settings: Settings) -> Path:
    """The weights this backbone loads (their sha256 keys its exported file)."""
    return find_or_download(settings)


def network(settings: Settings) -> VisionTransformer:
    """The network with the official weights, in eval mode; forward gives the 384-d CLS token."""
    model = timm_network()
    load_checkpoint(model, find_or_download(settings))
    return model.eval().requires_grad_(False)
