"""The backbones: DINOv2 from its official checkpoint layout, EfficientNet-Lite0 from its package,
the lookup order, the clear error when weights are missing, and ``auto``."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from sqlalchemy import select

from core.config import Settings
from core.errors import ConfigError, ModelError, WeightsNotFound
from core.imaging import DECODE_MIN_SIDE, decode_stored
from core.model.backbones import (
    BACKBONE_IDS,
    DINOV2,
    EFFICIENTNET_LITE0,
    backbone_module,
    dinov2,
    efficientnet_lite0,
    get_backbone,
    resolve_backbone_id,
)
from core.model.preprocessing import Preprocessing
from core.model.runtimes.files import cosines
from core.model.runtimes.selection import COSINE_MIN
from core.registry import Embedding, Photo, Registry
from tests.conftest import REPO_ROOT
from tests.services import free_port

DEPTH, WIDTH = 12, 384


def official_dinov2_keys() -> set[str]:
    """The key layout of Meta's dinov2_vits14_pretrain.pth."""
    per_block = [
        "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
        "attn.proj.bias", "ls1.gamma", "norm2.weight", "norm2.bias", "mlp.fc1.weight",
        "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias", "ls2.gamma",
    ]  # fmt: skip
    blocks = {f"blocks.{n}.{name}" for n in range(DEPTH) for name in per_block}
    top = {"cls_token", "pos_embed", "mask_token", "patch_embed.proj.weight",
           "patch_embed.proj.bias", "norm.weight", "norm.bias"}  # fmt: skip
    return blocks | top


def reference_vit() -> torch.nn.Module:
    """A random ViT-S/14 at DINOv2's native 518 px, every tensor randomised (seeded).

    ``dynamic_img_size`` lets it run on 224 px input by resampling its position embedding
    on the fly: the independent reference for the loaded 224 px backbone.
    """
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, dynamic_img_size=True)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("gamma") or ("norm" in name and name.endswith("weight")):
                tensor.uniform_(0.5, 1.5)  # layer scales at init (1e-5) would hide the blocks
            else:
                tensor.normal_(0.0, 0.05)
    return model.eval()


@pytest.fixture(scope="module")
def dinov2_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """A checkpoint in the official layout (518 px pos_embed, mask_token) and its source model."""
    model = reference_vit()
    state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    state["mask_token"] = torch.randn(1, WIDTH)
    assert set(state) == official_dinov2_keys()
    assert state["pos_embed"].shape == (1, 1 + 37 * 37, WIDTH)
    path = tmp_path_factory.mktemp("weights") / dinov2.FILENAME
    torch.save(state, path)
    return path, model


@pytest.fixture
def offline(make_settings: Callable[..., Settings], tmp_path: Path) -> Callable[..., Settings]:
    """Settings with an empty torch hub cache of their own."""

    def build(**overrides: object) -> Settings:
        overrides.setdefault("torch_home", tmp_path / "torch")
        overrides.setdefault("allow_weight_download", False)
        return make_settings(**overrides)

    return build


def test_dinov2_loads_the_official_layout_strictly_with_identical_outputs(
    offline: Callable[..., Settings],
    dinov2_checkpoint: tuple[Path, torch.nn.Module],
    dataset_photos: dict[str, list[Path]],
) -> None:
    path, reference = dinov2_checkpoint
    settings = offline(dinov2_weights=path, backbone="auto")
    assert dinov2.weights_path(settings) == path
    assert resolve_backbone_id(settings) == DINOV2

    backbone = get_backbone(DINOV2, settings)
    assert (backbone.id, backbone.dim) == (DINOV2, 384)
    assert get_backbone(DINOV2, settings) is backbone
    assert backbone.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()

    # Every tensor but the position embedding (resampled 37x37 -> 16x16) is the saved one.
    saved = torch.load(path, weights_only=True)
    network = dinov2.network(settings)
    loaded = network.state_dict()
    assert set(loaded) == official_dinov2_keys() - {"mask_token"}
    for name, tensor in loaded.items():
        if name == "pos_embed":
            assert tensor.shape == (1, 1 + 16 * 16, WIDTH)
        else:
            assert torch.equal(tensor, saved[name]), name

    images = [decode_stored(p.read_bytes()) for p in dataset_photos["dandelion"][:3]]
    batch = torch.from_numpy(np.stack([backbone.preprocess(image) for image in images]))
    assert batch.shape == (3, 3, 224, 224)
    with torch.inference_mode():
        expected = reference.forward_features(batch)[:, 0].numpy()
        # The torch network is exactly the reference...
        np.testing.assert_allclose(network(batch).numpy(), expected, rtol=0, atol=1e-5)
    # ...and the runtime chosen here keeps parity with it.
    embedded = backbone.embed(images, batch_size=2)
    assert embedded.shape == (3, 384) and embedded.dtype == np.float32
    assert cosines(embedded, expected).min() >= COSINE_MIN
    assert np.abs(embedded).mean() > 0.1  # a real signal, not zeros


def test_dinov2_is_found_in_the_torch_hub_cache(
    offline: Callable[..., Settings], tmp_path: Path, dinov2_checkpoint: tuple[Path, object]
) -> None:
    settings = offline()
    assert dinov2.weights_path(settings) is None
    cached = tmp_path / "torch" / "hub" / "checkpoints" / dinov2.FILENAME
    cached.parent.mkdir(parents=True)
    cached.write_bytes(dinov2_checkpoint[0].read_bytes())

    assert dinov2.weights_path(settings) == cached
    assert resolve_backbone_id(settings) == DINOV2
    assert dinov2.weights_file(settings) == cached


def test_a_configured_weights_file_that_does_not_exist_is_named(
    offline: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = offline(dinov2_weights=tmp_path / "nowhere" / dinov2.FILENAME, backbone="auto")
    with pytest.raises(WeightsNotFound, match="nowhere") as error:
        get_backbone(DINOV2, settings)
    assert "CLASSIFI_DINOV2_WEIGHTS" in str(error.value)
    with pytest.raises(WeightsNotFound, match="nowhere"):  # a broken setting is no fallback
        resolve_backbone_id(settings)


def test_missing_dinov2_weights_give_one_clear_error_without_download(
    offline: Callable[..., Settings], tmp_path: Path
) -> None:
    with pytest.raises(WeightsNotFound) as error:
        get_backbone(DINOV2, offline())
    message = str(error.value)
    for hint in (
        str(tmp_path / "torch" / "hub" / "checkpoints" / dinov2.FILENAME),
        "download not allowed",
        "CLASSIFI_DINOV2_WEIGHTS",
        dinov2.URL,
        "backbone = 'efficientnet_lite0'",
    ):
        assert hint in message


def test_an_unreachable_download_fails_at_once_and_leaves_nothing(
    offline: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing listens on this port: the connection is refused, as on a machine without network.
    monkeypatch.setattr(dinov2, "URL", f"http://127.0.0.1:{free_port()}/weights.pth")
    with pytest.raises(WeightsNotFound, match="failed"):
        get_backbone(DINOV2, offline(allow_weight_download=True))
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    assert not checkpoints.exists() or list(checkpoints.iterdir()) == []


@pytest.fixture
def weights_server(dinov2_checkpoint: tuple[Path, object]) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving the checkpoint file."""
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(dinov2_checkpoint[0].parent)
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/{dinov2.FILENAME}"
    server.shutdown()
    server.server_close()


def test_the_download_lands_in_the_hub_cache_when_allowed(
    offline: Callable[..., Settings],
    tmp_path: Path,
    weights_server: str,
    dinov2_checkpoint: tuple[Path, object],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dinov2, "URL", weights_server)
    settings = offline(allow_weight_download=True)
    backbone = get_backbone(DINOV2, settings)
    cached = tmp_path / "torch" / "hub" / "checkpoints" / dinov2.FILENAME
    assert cached.read_bytes() == dinov2_checkpoint[0].read_bytes()
    assert backbone.weights_sha256 == hashlib.sha256(cached.read_bytes()).hexdigest()
    assert sorted(p.name for p in cached.parent.iterdir()) == [dinov2.FILENAME]  # no .part left


def test_a_file_that_is_not_the_dinov2_checkpoint_is_refused(
    offline: Callable[..., Settings], tmp_path: Path
) -> None:
    wrong = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(ModelError, match="not the official DINOv2 checkpoint"):
        get_backbone(DINOV2, offline(dinov2_weights=wrong))


def test_auto_falls_back_to_the_offline_backbone(offline: Callable[..., Settings]) -> None:
    assert resolve_backbone_id(offline(backbone="auto")) == EFFICIENTNET_LITE0
    for backbone_id in BACKBONE_IDS:
        assert resolve_backbone_id(offline(backbone=backbone_id)) == backbone_id
    with pytest.raises(ConfigError, match="auto, dinov2_vits14, efficientnet_lite0"):
        resolve_backbone_id(offline(backbone="resnet50"))
    with pytest.raises(ConfigError, match="Unknown backbone"):
        get_backbone("resnet50", offline())


def test_efficientnet_lite0_maps_every_package_tensor(offline: Callable[..., Settings]) -> None:
    settings = offline()
    network = efficientnet_lite0.network(settings)
    source = torch.load(efficientnet_lite0.weights_path(), weights_only=True)
    source_tensors = [t for name, t in source.items() if not name.startswith("_fc.")]
    loaded = list(network.state_dict().values())
    assert len(loaded) == len(source_tensors) == 294
    for index, (ours, theirs) in enumerate(zip(loaded, source_tensors, strict=True)):
        assert torch.equal(ours, theirs), index
    batch_norms = [m for m in network.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert batch_norms and all(m.eps == 1e-3 for m in batch_norms)  # as the weights were trained

    images = [Image.new("RGB", (250, 180), color) for color in ("yellow", "green")]
    vectors = get_backbone(EFFICIENTNET_LITE0, settings).embed(images)
    assert vectors.shape == (2, 1280) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all() and not np.allclose(vectors[0], vectors[1])


def test_efficientnet_lite0_refuses_a_tensor_that_does_not_fit(tmp_path: Path) -> None:
    source = torch.load(efficientnet_lite0.weights_path(), weights_only=True)
    source["_blocks.3._project_conv.weight"] = torch.zeros(7, 7, 1, 1)
    broken = tmp_path / "broken.pth"
    torch.save(source, broken)
    with pytest.raises(ModelError, match=r"_blocks\.3\._project_conv\.weight"):
        efficientnet_lite0.load_weights(efficientnet_lite0.timm_network(), broken)


def test_get_backbone_builds_one_instance_across_threads(offline: Callable[..., Settings]) -> None:
    settings = offline()
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(get_backbone(EFFICIENTNET_LITE0, settings)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and all(result is results[0] for result in results)


def test_nothing_is_built_at_import_and_prediction_imports_no_torch() -> None:
    code = (
        "import sys, core.model.backbones as b, core.model.embeddings, core.model.predictor,"
        " core.loop.submissions, core.app;"
        "print('timm' in sys.modules, 'torch' in sys.modules, len(b._built))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    ).stdout
    assert output.split() == ["False", "False", "0"]


def test_every_backbone_is_decoded_large_enough_for_its_resize() -> None:
    for backbone_id in BACKBONE_IDS:
        preprocessing = backbone_module(backbone_id).PREPROCESSING
        assert preprocessing.min_decode_side <= DECODE_MIN_SIDE, backbone_id


def test_preprocessing_shapes_and_its_record_survives_json() -> None:
    photo = Image.new("RGB", (250, 180), "white")
    photo.paste((0, 0, 0), (0, 0, 20, 180))  # a black band on the left edge
    squash = Preprocessing(resize="squash", mean=(0.5,) * 3, std=(0.5,) * 3)
    crop = Preprocessing(resize="crop", mean=(0.5,) * 3, std=(0.5,) * 3)
    for option in (squash, crop):
        pixels = option(photo)
        assert pixels.shape == (3, 224, 224) and pixels.dtype == np.float32
        assert json.loads(json.dumps(option.as_dict())) == option.as_dict()
    # Squashing keeps the band (now -1 after normalisation); the centre crop cuts it off.
    assert squash(photo)[:, :, 0].max() < -0.9
    assert crop(photo)[:, :, 0].min() > 0.9


@pytest.mark.slow
def test_efficientnet_lite0_features_separate_the_two_labels(embedded_home: Path) -> None:
    """A linear head on the cached features of the 340 photos, 70/30 stratified split."""
    registry = Registry(f"sqlite:///{embedded_home / 'registry.db'}")
    with registry.session() as session:
        rows = session.execute(
            select(Photo.label, Embedding.vector)
            .join(Embedding, Embedding.sha256 == Photo.sha256)
            .where(Embedding.backbone_id == EFFICIENTNET_LITE0)
            .order_by(Photo.sha256)
        ).all()
    registry.dispose()
    assert len(rows) == 340
    features = torch.from_numpy(np.stack([np.frombuffer(v, "<f4") for _, v in rows]).copy())
    labels = torch.tensor([label == "grass" for label, _ in rows], dtype=torch.float32)

    generator = torch.Generator().manual_seed(42)
    validation = torch.cat(
        [
            members[torch.randperm(len(members), generator=generator)][: len(members) * 3 // 10]
            for members in ((labels == value).nonzero().flatten() for value in (0.0, 1.0))
        ]
    )
    is_train = torch.ones(len(rows), dtype=torch.bool)
    is_train[validation] = False
    torch.manual_seed(42)
    head = torch.nn.Linear(features.shape[1], 1)
    optimizer = torch.optim.Adam(head.parameters(), lr=0.003)
    for _ in range(200):
        optimizer.zero_grad()
        logits = head(features[is_train]).squeeze(1)
        torch.nn.functional.binary_cross_entropy_with_logits(logits, labels[is_train]).backward()
        optimizer.step()
    with torch.no_grad():
        predicted = head(features[~is_train]).squeeze(1) > 0
    accuracy = (predicted == labels[~is_train].bool()).float().mean().item()
    assert accuracy >= 0.93
