"""``classifi export``: the files a model or a machine needs elsewhere.

``--format runtimes``: the exported backbone files (:mod:`core.model.runtimes.files`), made
ahead of time (at an image or bundle build) and copied to a folder to ship; a process that
only predicts finds them there through the setting ``runtime_search_path``.

``--format onnx``: a model as one self-contained ONNX file for other apps. The file takes the preprocessed image tensor (``pixels``, NCHW float32) and gives the label
probabilities (``probabilities``, one column per label). It is the backbone's exported
network (:mod:`core.model.runtimes.files`) with the head appended as ONNX nodes, so making
it needs no torch. A JSON sidecar says how to preprocess a photo and what the columns mean;
README.md ("Use a model in your own app") shows the few lines of onnxruntime and Pillow
that use it.
"""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core.config import Settings
from core.errors import ModelError
from core.imaging import decode_stored
from core.model.artifacts import ModelArtifact
from core.model.backbones import ensure_export, resolve_backbone_id
from core.model.calibration import temperature_of
from core.model.metrics import flat_metrics
from core.model.runtimes.files import (
    INPUT,
    OPSET,
    OUTPUT,
    PROBE_SIZE,
    Export,
    atomic_write,
    file_sha256,
)
from core.model.versions import champion
from core.registry import Registry
from core.store import ObjectStore

PROBABILITIES = "probabilities"
FORMAT = "classifi-onnx-model/1"


def probe_photos(store: ObjectStore, photos: Sequence[Any]) -> list[Image.Image]:
    """Photos for an export's parity probe, spread over ``photos`` (stored photos with an
    ``object_key``, sorted by sha256: every label is among them)."""
    step = max(1, len(photos) // PROBE_SIZE)
    return [decode_stored(store.get(photo.object_key)) for photo in photos[::step][:PROBE_SIZE]]


def export_runtime_files(
    settings: Settings,
    registry: Registry,
    store: ObjectStore,
    *,
    backbone_id: str | None = None,
    out: Path | None = None,
) -> Export:
    """The exported network of ``backbone_id`` (default: the champion's, else the configured
    one), made now if missing (torch needed), its probe from the training photos; copied
    into ``out`` when given."""
    from core.model.training import training_set  # training, and so torch, only here

    weights_sha256 = None
    if backbone_id is None:
        current = champion(registry)
        if current is not None:
            backbone_id = current.backbone_id
            weights_sha256 = current.params.get("backbone_weights_sha256")
        else:
            backbone_id = resolve_backbone_id(settings)
    export = ensure_export(
        backbone_id,
        settings,
        weights_sha256=weights_sha256,
        probe_photos=lambda: probe_photos(store, training_set(registry)),
    )
    if out is None:
        return export
    out.mkdir(parents=True, exist_ok=True)
    for source in (export.onnx, export.probe_path, export.sidecar):  # the sidecar last
        target = out / source.name
        if source.resolve() != target.resolve():
            atomic_write(target, functools.partial(shutil.copyfile, source))
    return Export(out / export.onnx.name, export.record)


@dataclass(frozen=True)
class ExportedModel:
    onnx: Path
    sidecar: Path
    description: dict[str, Any]


def _with_head(network: Any, artifact: ModelArtifact) -> Any:
    """The backbone's ONNX graph with the head after its embedding: logits divided by the
    model's calibrated temperature, then sigmoid (two labels: ``[1 - p, p]``) or softmax, so
    the file answers the probabilities classify answers."""
    from onnx import TensorProto, helper, numpy_helper

    head = artifact.head()
    temperature = temperature_of(artifact.calibration)
    graph = network.graph
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.ascontiguousarray(head.weight.T), "head_weight"),
            numpy_helper.from_array(head.bias, "head_bias"),
            numpy_helper.from_array(np.array([temperature], np.float32), "head_temperature"),
        ]
    )
    nodes = [
        helper.make_node("MatMul", [OUTPUT, "head_weight"], ["head_product"]),
        helper.make_node("Add", ["head_product", "head_bias"], ["head_raw_logits"]),
        helper.make_node("Div", ["head_raw_logits", "head_temperature"], ["head_logits"]),
    ]
    if head.n_labels == 2:
        graph.initializer.append(numpy_helper.from_array(np.ones((1, 1), np.float32), "one"))
        nodes += [
            helper.make_node("Sigmoid", ["head_logits"], ["positive"]),
            helper.make_node("Sub", ["one", "positive"], ["negative"]),
            helper.make_node("Concat", ["negative", "positive"], [PROBABILITIES], axis=1),
        ]
    else:
        nodes.append(helper.make_node("Softmax", ["head_logits"], [PROBABILITIES], axis=1))
    graph.node.extend(nodes)
    del graph.output[:]
    graph.output.append(
        helper.make_tensor_value_info(
            PROBABILITIES, TensorProto.FLOAT, ["batch", len(artifact.labels)]
        )
    )
    return network


def export_onnx_model(
    settings: Settings, artifact: ModelArtifact, version: int, name: str, out: Path
) -> ExportedModel:
    """Write ``<out>/<name>.onnx`` and ``<out>/<name>.json`` for model ``version``."""
    import onnx

    export = ensure_export(
        artifact.backbone_id, settings, weights_sha256=artifact.backbone_weights_sha256
    )
    out.mkdir(parents=True, exist_ok=True)
    model = _with_head(onnx.load(str(export.onnx)), artifact)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ModelError(
            f"The exported model of version {version} is not valid ONNX: {exc}"
        ) from exc
    target = out / f"{name}.onnx"
    atomic_write(target, lambda path: onnx.save(model, str(path)))
    description = {
        "format": FORMAT,
        "version": version,
        "backbone": artifact.backbone_id,
        "labels": list(artifact.labels),
        "preprocessing": artifact.preprocessing,
        "input": {
            "name": INPUT,
            "shape": ["batch", 3, artifact.preprocessing["size"], artifact.preprocessing["size"]],
            "dtype": "float32",
        },
        "output": {
            "name": PROBABILITIES,
            "shape": ["batch", len(artifact.labels)],
            "columns": list(artifact.labels),
        },
        "metrics": flat_metrics(artifact.metrics),
        "temperature": temperature_of(artifact.calibration),
        "opset": OPSET,
        "onnx": target.name,
        "sha256": file_sha256(target),
    }
    sidecar = out / f"{name}.json"
    atomic_write(
        sidecar, lambda path: path.write_text(json.dumps(description, indent=2), encoding="utf-8")
    )
    return ExportedModel(target, sidecar, description)
