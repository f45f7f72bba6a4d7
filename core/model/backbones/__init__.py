"""The backbones, chosen from a table by id, one module per backbone (as frigate chooses its
detectors): DINOv2 ViT-S/14 (the specification's choice) and EfficientNet-Lite0 (offline).

Each module offers ``ID``, ``DIM``, ``PREPROCESSING``, ``weights_key(settings)`` and
``build(settings)``. Modules are imported on first use, and :func:`get_backbone` builds each
backbone once per process.
"""

from __future__ import annotations

import importlib
import logging
import threading
from types import ModuleType

from core.config import Settings
from core.errors import ConfigError
from core.model.backbone import Backbone

log = logging.getLogger(__name__)

DINOV2 = "dinov2_vits14"
EFFICIENTNET_LITE0 = "efficientnet_lite0"
AUTO = "auto"

#: id -> the module that builds it.
BACKBONES = {
    DINOV2: "core.model.backbones.dinov2",
    EFFICIENTNET_LITE0: "core.model.backbones.efficientnet_lite0",
}
BACKBONE_IDS = tuple(BACKBONES)


def backbone_module(backbone_id: str) -> ModuleType:
    if backbone_id not in BACKBONES:
        raise ConfigError(
            f"Unknown backbone {backbone_id!r}: use one of {', '.join(BACKBONE_IDS)}."
        )
    return importlib.import_module(BACKBONES[backbone_id])


def backbone_choice(settings: Settings) -> tuple[str, str]:
    """The backbone to use and why: ``auto`` means DINOv2 when its weights are here, else the
    offline one."""
    wanted = settings.backbone
    if wanted in BACKBONES:
        return wanted, "set in the settings"
    if wanted != AUTO:
        raise ConfigError(
            f"Unknown backbone {wanted!r}: use one of {', '.join((AUTO, *BACKBONE_IDS))}."
        )
    dinov2 = backbone_module(DINOV2)
    weights = dinov2.weights_path(settings)
    if weights is not None:
        return DINOV2, f"auto: DINOv2 weights found at {weights}"
    return EFFICIENTNET_LITE0, (
        f"auto: no DINOv2 weights at {dinov2.hub_checkpoint(settings)} or in setting "
        "dinov2_weights, so the offline pretrained backbone is used"
    )


_logged_choices: set[str] = set()


def resolve_backbone_id(settings: Settings) -> str:
    """The backbone id to train with; the choice and its reason are logged once."""
    chosen, reason = backbone_choice(settings)
    message = f"backbone {chosen} ({reason})"
    if message not in _logged_choices:
        _logged_choices.add(message)
        log.info(message)
    return chosen


_built: dict[tuple[str, str], Backbone] = {}
_built_lock = threading.Lock()


def get_backbone(backbone_id: str, settings: Settings) -> Backbone:
    """The one instance of ``backbone_id`` in this process, built on first use (thread-safe)."""
    module = backbone_module(backbone_id)
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    with _built_lock:
        key = (backbone_id, module.weights_key(settings))
        if key not in _built:
            _built[key] = module.build(settings)
        backbone = _built[key]
    log.debug("backbone %s built from %s", backbone.id, key[1])
    return backbone
