"""Images that are not photos of plants, for the out-of-distribution measurements: the app's
own screenshots, the sample images and icons that installed packages ship, and charts
rendered here. (bench/accuracy.py prints the same measurement.)"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin is not None, f"{name} is not installed"
    return Path(spec.origin).parent


def _on_white(image: Image.Image) -> Image.Image:
    """An icon with transparency as a viewer shows it: on white."""
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")


def _charts() -> list[tuple[str, Image.Image]]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    rng = np.random.default_rng(16)
    drawings = {
        "line": lambda ax: ax.plot(np.cumsum(rng.normal(size=(200, 3)), axis=0)),
        "bars": lambda ax: ax.bar(list("abcdef"), rng.integers(1, 10, 6), color="tab:green"),
        "scatter": lambda ax: ax.scatter(*rng.normal(size=(2, 300)), c=rng.random(300)),
        "pie": lambda ax: ax.pie(rng.integers(1, 10, 5)),
        "histogram": lambda ax: ax.hist(rng.normal(size=2000), bins=40, color="olivedrab"),
        "matrix": lambda ax: ax.imshow(rng.random((12, 12)), cmap="YlGn"),
        "contour": lambda ax: ax.contourf(
            *np.meshgrid(np.linspace(-2, 2, 80), np.linspace(-2, 2, 80)),
            np.sin(np.add.outer(np.linspace(-3, 3, 80), np.linspace(-3, 3, 80))),
            cmap="viridis",
        ),
        "steps": lambda ax: ax.step(range(30), rng.integers(0, 5, 30)),
        "text": lambda ax: ax.text(0.1, 0.5, "Quarterly report\n2026", fontsize=28),
        "area": lambda ax: ax.stackplot(
            range(20), rng.random((3, 20)), colors=["#7cb342", "#c0ca33", "#fdd835"]
        ),
    }
    charts = []
    for name, draw in drawings.items():
        figure, axes = pyplot.subplots(figsize=(4, 3), dpi=100)
        draw(axes)
        axes.set_title(name)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        pyplot.close(figure)
        charts.append((f"chart:{name}", Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")))
    return charts


def non_plant_images() -> list[tuple[str, Image.Image]]:
    """(name, RGB image) of every non-plant image (a flower sample image is left out: it is
    a plant photo)."""
    files = sorted((ROOT / "docs" / "screenshots").glob("*.png"))
    files.append(_package_dir("sklearn") / "datasets" / "images" / "china.jpg")
    files += sorted((_package_dir("matplotlib") / "mpl-data" / "images").glob("*_large.png"))
    files.append(_package_dir("PySide6") / "scripts" / "deploy_lib" / "pyside_icon.jpg")
    images = [(path.name, _on_white(Image.open(path))) for path in files if path.is_file()]
    return images + _charts()
