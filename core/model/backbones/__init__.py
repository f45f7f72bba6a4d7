"""The backbones, chosen from a table by id, one module per backbone (as frigate chooses its
detectors): DINOv2 ViT-S/14 (the specification's choice), EfficientNet-Lite0 (offline, the
default without DINOv2's weights) and EfficientNet-Lite2 (offline, 260 px: chosen by name;
bench/accuracy.py found it no more accurate than Lite0 on the shared photos and three times
slower).

Each module offers ``ID``, ``DIM``, ``PREPROCESSING``, ``weights_file(settings)`` and
``network(settings)`` (the torch network, for the exporter and the torch runtime); none
imports torch before ``network`` is called. Modules are imported on first use.

:func:`get_backbone` gives each backbone on the runtime the settings choose
(:mod:`core.model.runtimes.selection`), built once per process, from its exported file
(:mod:`core.model.runtimes.files`), which it exports first when torch is here and the file
is not.
"""

from __future__ import annotations

import functools
import importlib
import logging
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from PIL import Image

from core.config import Settings
from core.errors import ConfigError, ModelError
from core.model.backbone import Backbone
from core.model.head import LinearHead
from core.model.runtimes import (
    Network,
    installed,
    limit_numpy_blas_to_one_thread,
    runtime_module,
)
from core.model.runtimes.files import (
    EXPORT_COMMAND,
    LEGACY_EXPORTERS,
    Export,
    atomic_write,
    export_backbone,
    export_key,
    file_sha256,
    find_export,
    latest_export,
    missing_export_error,
    search_dirs,
    writable_dir,
)
from core.model.runtimes.selection import Selection, recorded, select

log = logging.getLogger(__name__)

DINOV2 = "dinov2_vits14"
EFFICIENTNET_LITE0 = "efficientnet_lite0"
EFFICIENTNET_LITE2 = "efficientnet_lite2"
AUTO = "auto"

#: id -> the module that builds it.
BACKBONES = {
    DINOV2: "core.model.backbones.dinov2",
    EFFICIENTNET_LITE0: "core.model.backbones.efficientnet_lite0",
    EFFICIENTNET_LITE2: "core.model.backbones.efficientnet_lite2",
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


def current_weights_sha256(backbone_id: str, settings: Settings) -> str:
    """The sha256 of the weights file ``backbone_id`` loads on this machine. Where torch is
    not installed the weights are of no use and may be absent (a bundle ships the exported
    network only): the newest export in the search folders stands for them."""
    module = backbone_module(backbone_id)
    if not installed("torch"):
        export = latest_export(settings, module.ID)
        if export is not None:
            return str(export.record["weights_sha256"])
    try:
        return file_sha256(module.weights_file(settings))
    except ImportError:  # the package that ships the weights is not installed either
        folders = ", ".join(str(folder) for folder in search_dirs(settings))
        raise ModelError(
            f"No exported {module.ID} network in {folders}, and neither torch nor the "
            f"backbone's weights are installed here. Fix: run `{EXPORT_COMMAND}` where torch "
            "is installed, then point the setting runtime_search_path "
            "(CLASSIFI_RUNTIME_SEARCH_PATH) at the folder it wrote."
        ) from None


ProbePhotos = Callable[[], Sequence[Image.Image]]

# key -> the exports this process made or found, oldest first: a home's may be deleted since
_exports: dict[str, list[Export]] = {}
_selections: dict[tuple[str, str, int | None, str], Selection] = {}
_built: dict[tuple[str, str, int | None], Backbone] = {}
_built_lock = threading.RLock()


def _copy_export(source: Export, folder: Path) -> None:
    """The files of ``source`` (and those derived from them here) copied into ``folder``,
    each atomically, the sidecar last."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [p for p in source.onnx.parent.glob(f"{source.stem}.*") if not p.name.endswith(".part")]
    for path in sorted(paths, key=lambda p: p == source.sidecar):
        atomic_write(folder / path.name, functools.partial(shutil.copyfile, path))


def ensure_export(
    backbone_id: str,
    settings: Settings,
    *,
    weights_sha256: str | None = None,
    probe_photos: ProbePhotos = tuple,
) -> Export:
    """The exported file of ``backbone_id`` findable from ``settings``: found, copied from
    another home this process knows, or exported now (torch needed; ``probe_photos()``
    gives the photos of its parity probe). ``weights_sha256`` asks for the network of those
    weights (a model's own), not of the weights file on this machine."""
    module = backbone_module(backbone_id)
    wanted = weights_sha256 or current_weights_sha256(backbone_id, settings)
    key = export_key(module.ID, wanted, module.PREPROCESSING)
    with _built_lock:
        found = find_export(settings, module.ID, key)
        source = next((e for e in _exports.get(key, ()) if e.sidecar.is_file()), None)
        if found is None and source is not None:
            _copy_export(source, writable_dir(settings))
            found = find_export(settings, module.ID, key)  # verified, as any found file
        if found is None and not installed("torch"):
            found = _legacy_export(settings, module, wanted)
        if found is None:
            if not installed("torch"):
                raise missing_export_error(settings, module.ID, key)
            if wanted != current_weights_sha256(backbone_id, settings):
                raise ModelError(
                    f"The model was trained on other {module.ID} weights (sha256 {wanted[:16]}) "
                    "than this machine has, and their exported network is not here: copy the "
                    "runtimes folder of the machine that trained it, or retrain."
                )
            found = export_backbone(settings, module, wanted, probe_photos())
        known = _exports.setdefault(key, [])
        if found not in known:
            known.append(found)
        return found


def _legacy_export(settings: Settings, module: ModuleType, weights_sha256: str) -> Export | None:
    """A file of an earlier export procedure with the same network (the same embeddings, no
    feature map), for a home exported before heatmaps where torch cannot export anew."""
    for exporter in LEGACY_EXPORTERS:
        key = export_key(module.ID, weights_sha256, module.PREPROCESSING, exporter)
        found = find_export(settings, module.ID, key)
        if found is not None:
            log.warning(
                "%s: using %s, exported before heatmaps; `%s` where torch is installed "
                "makes the current file",
                module.ID,
                found.onnx,
                EXPORT_COMMAND,
            )
            return found
    return None


def runtime_selection(
    backbone_id: str, settings: Settings, *, weights_sha256: str | None = None
) -> Selection:
    """The measured runtimes of ``backbone_id`` on this machine (measured on first use)."""
    export = ensure_export(backbone_id, settings, weights_sha256=weights_sha256)
    with _built_lock:
        # Per home too: each home keeps its own measurement (a process may open several).
        cache_key = (
            export.key,
            settings.runtime,
            settings.inference_threads,
            str(writable_dir(settings)),
        )
        if cache_key not in _selections:
            _selections[cache_key] = select(network_of(export, settings), export)
        return _selections[cache_key]


def network_of(export: Export, settings: Settings) -> Network:
    """What the runtimes build ``export``'s engines from."""
    module = backbone_module(str(export.record["backbone"]))
    return Network(module.ID, export.onnx, writable_dir(settings), module, settings)


def get_backbone(
    backbone_id: str,
    settings: Settings,
    *,
    weights_sha256: str | None = None,
    head: LinearHead | None = None,
) -> Backbone:
    """``backbone_id`` on the fastest runtime that keeps parity here (for ``head``, when
    given: a model's predictions must not change), one instance per process (thread-safe)."""
    module = backbone_module(backbone_id)
    selection = runtime_selection(backbone_id, settings, weights_sha256=weights_sha256)
    candidate, reason = selection.choose(head)
    with _built_lock:
        cache_key = (selection.export.key, candidate.kind, settings.inference_threads)
        if cache_key not in _built:
            limit_numpy_blas_to_one_thread()
            engine = runtime_module(candidate.runtime).load(
                selection.network, candidate.precision, settings.inference_threads
            )
            _built[cache_key] = Backbone(
                module.ID,
                module.DIM,
                module.PREPROCESSING,
                engine,
                runtime=candidate.runtime,
                precision=candidate.precision,
                weights=str(selection.export.onnx),
                weights_sha256=str(selection.export.record["weights_sha256"]),
                accepted_kinds=selection.accepted_kinds,
                reason=reason,
            )
            log.info("backbone %s on %s (%s)", module.ID, candidate.kind, reason)
        return _built[cache_key]


def recorded_runtime(
    settings: Settings, backbone_id: str, weights_sha256: str | None = None
) -> dict[str, Any]:
    """What ``backbone_id`` runs on here, and why, as recorded (nothing is measured or
    loaded): ``{setting, runtime, reason, candidates}``; ``runtime`` is None when not
    exported or not measured yet. ``weights_sha256`` names a model's own network."""
    module = backbone_module(backbone_id)
    answer: dict[str, Any] = {"setting": settings.runtime, "runtime": None, "candidates": []}
    export = (
        find_export(
            settings, module.ID, export_key(module.ID, weights_sha256, module.PREPROCESSING)
        )
        if weights_sha256
        else latest_export(settings, module.ID)
    )
    if export is None:
        answer["reason"] = f"not exported yet: training or `{EXPORT_COMMAND}` exports it"
        return answer
    selection = recorded(network_of(export, settings), export)
    if selection is None:
        answer["reason"] = (
            "not measured on this machine yet: the first process that embeds measures every "
            "runtime once"
        )
        return answer
    answer["candidates"] = [candidate.describe() for candidate in selection.candidates]
    try:
        chosen, answer["reason"] = selection.choose()
        answer["runtime"] = chosen.kind
    except ModelError as exc:
        answer["reason"] = str(exc)
    return answer
