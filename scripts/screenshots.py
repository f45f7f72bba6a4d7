"""Screenshots of each desktop window for the README, rendered offscreen into PNG files.

The app runs for real on a copy of a data folder with a trained champion: photos are dropped
and classified, one is submitted, a few wait for review, a second model version is trained,
and each window is grabbed once its background work has finished: the main window, its
heatmap, the submit panel, the admin window and its "Suspected mislabels" tab, the models view
and the settings. Get started runs on a fresh data folder: label folders dropped, what was
found, the training as it runs, the result.

    .venv/bin/python scripts/screenshots.py [--home DIR] [--out docs/screenshots]

Without ``--home`` a champion is trained first (``classifi ingest`` and ``classifi train`` on
the first photos of each label of the shared data set, and the last ``MISFILED_PER_LABEL``
filed under the other label, as a careless import would: the label audit's to find). The
given home is never modified.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PIL import Image  # noqa: E402
from PySide6.QtCore import QBuffer, QIODevice, QItemSelectionModel  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication, QWidget  # noqa: E402

from core.config import Settings, load_settings  # noqa: E402
from core.model.metrics import EpochStats  # noqa: E402
from desktop.app import create_application, preferences  # noqa: E402
from desktop.main_window import MainWindow  # noqa: E402
from desktop.results import ROW_ROLE  # noqa: E402

DEFAULT_DATASET = ROOT.parent / "shared" / "datasets" / "dandelion-grass"
TRAIN_PER_LABEL = 30
MISFILED_PER_LABEL = 2
SIZE = (1000, 700)
MAX_BYTES = 300_000
ADMIN_PASSWORD = "screenshot admin password"


def classifi(home: Path, *args: str) -> None:
    command = [str(Path(sys.executable).with_name("classifi")), "--home", str(home), *args]
    # Only the home counts: CLASSIFI_* variables must not send the work to other stores.
    environ = {key: value for key, value in os.environ.items() if not key.startswith("CLASSIFI_")}
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=environ)


def train_home(home: Path, dataset: Path) -> None:
    """A champion trained by the CLI on the first photos of each label and a few misfiled
    ones (linked, not copied)."""
    source = home.parent / "source"
    folders = sorted(path for path in dataset.iterdir() if path.is_dir())
    for folder in folders:
        (source / folder.name).mkdir(parents=True)
    for folder, other in zip(folders, folders[1:] + folders[:1], strict=True):
        photos = sorted(folder.glob("*.jpg"))
        for photo in photos[:TRAIN_PER_LABEL]:
            (source / folder.name / photo.name).symlink_to(photo)
        for photo in photos[-MISFILED_PER_LABEL:]:
            (source / other.name / photo.name).symlink_to(photo)
    classifi(home, "ingest", str(source))
    classifi(home, "train", "--backbone", "efficientnet_lite0")


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"Timed out waiting for {what}.")
        QTest.qWait(50)
    QTest.qWait(200)  # the last repaints


def save(widget: QWidget, path: Path) -> int:
    """Grab ``widget`` as it is painted and write an optimised PNG; its size in bytes."""
    QApplication.processEvents()
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    widget.grab().toImage().save(buffer, "PNG")
    image = Image.open(io.BytesIO(bytes(buffer.data()))).convert("RGB")
    image.save(path, optimize=True)
    if path.stat().st_size > MAX_BYTES:  # photos make big PNGs: 256 colours look the same here
        image.quantize(256, dither=Image.Dither.FLOYDSTEINBERG).save(path, optimize=True)
    return path.stat().st_size


def select_photo(window: MainWindow, position: int) -> None:
    window.grid.selectionModel().select(
        window.proxy.index(position, 0), QItemSelectionModel.SelectionFlag.ClearAndSelect
    )


def take(settings: Settings, dataset: Path, out: Path) -> list[tuple[Path, int]]:
    from desktop.admin_window import open_admin_window
    from desktop.models_view import open_models_window
    from desktop.settings_dialog import SettingsDialog

    create_application([sys.argv[0]])
    shots: list[tuple[Path, int]] = []

    def shoot(widget: QWidget, name: str) -> None:
        shots.append((out / name, save(widget, out / name)))

    window = MainWindow(settings, preferences(settings))
    window.resize(*SIZE)
    window.show()
    wait_until(lambda: window._champion_known, "the champion")
    shoot(window, "main-window-empty.png")

    labels = sorted(path for path in dataset.iterdir() if path.is_dir())
    unseen = [sorted(label.glob("*.jpg"))[TRAIN_PER_LABEL:] for label in labels]
    dropped = [
        photo for pair in zip(*(photos[:8] for photos in unseen), strict=False) for photo in pair
    ]
    window.classify_paths(dropped)
    wait_until(lambda: window.run is not None and not window.run.running, "the classification")
    select_photo(window, 2)
    shoot(window, "main-window.png")

    window.heatmap.box.setChecked(True)
    wait_until(lambda: not window.heatmap.picture.pixmap().isNull(), "the heatmap")
    shoot(window, "main-window-heatmap.png")
    window.heatmap.box.setChecked(False)

    window.view_buttons.button(1).click()  # the list view
    select_photo(window, 5)
    row = window.proxy.index(5, 0).data(ROW_ROLE)
    other = next(label for label in settings.labels if label != row.label)
    window.submit_panel.label_box.setCurrentText(other)  # a correction of the prediction
    window.submit_panel.submit_button.click()
    wait_until(lambda: window.submit_panel.answer.text().startswith("Submitted"), "the submission")
    shoot(window, "submit-panel.png")

    backend = window.backend
    for photos in unseen:
        for photo in photos[8:11]:
            backend.submit(photo.read_bytes(), photo.parent.name, source=str(photo))
    backend.choose_admin_password(ADMIN_PASSWORD)
    backend.sign_in(ADMIN_PASSWORD)
    admin = open_admin_window(window)
    assert admin is not None
    admin.resize(*SIZE)
    wait_until(
        lambda: (
            admin.model.rowCount() > 0 and len(admin.model.thumbnails) == admin.model.rowCount()
        ),
        "the pending submissions",
    )
    shoot(admin, "admin-window.png")

    admin.tabs.setCurrentWidget(admin.mislabels)
    admin.mislabels.run_audit()
    wait_until(
        lambda: (
            admin.mislabels.audit_button.isEnabled()
            and admin.mislabels.preview.pixmap() is not None
            and not admin.mislabels.preview.pixmap().isNull()
        ),
        "the label audit",
    )
    shoot(admin, "label-audit.png")
    admin.close()

    models = open_models_window(window)
    models.resize(*SIZE)
    wait_until(lambda: models.table.rowCount() == 2, "the model versions")
    shoot(models, "models-view.png")
    models.close()

    dialog = SettingsDialog(window.prefs, window)
    dialog.remote.setChecked(True)  # shown, not saved: the dialog is never accepted
    dialog.url.setText("http://edge.example.lan:8000")
    dialog.show()
    wait_until(dialog.isVisible, "the settings dialog")
    shoot(dialog, "settings-dialog.png")
    dialog.reject()
    window.close()
    return shots


def take_get_started(home: Path, dataset: Path, out: Path) -> list[tuple[Path, int]]:
    """Get started on the fresh data folder ``home``, from ``dataset``'s label folders."""
    from desktop.get_started import open_get_started

    shots: list[tuple[Path, int]] = []

    def shoot(widget: QWidget, name: str) -> None:
        shots.append((out / name, save(widget, out / name)))

    settings = load_settings({}, overrides={"home": home, "backbone": "efficientnet_lite0"})
    window = MainWindow(settings, preferences(settings))
    window.resize(*SIZE)
    window.show()
    wait_until(lambda: window._champion_known, "the empty home")
    shoot(window, "main-window-no-model.png")

    get_started = open_get_started(window, sorted(p for p in dataset.iterdir() if p.is_dir()))
    get_started.resize(*SIZE)
    wait_until(lambda: get_started.preview is not None, "the preview of the label folders")
    shoot(get_started, "get-started-preview.png")

    get_started.start_import()
    job = get_started.job
    assert job is not None
    panel = get_started.progress_page

    def mid_training(stats: EpochStats) -> None:
        if stats.epoch == settings.epochs // 2 + 1:  # the curves half drawn
            shoot(get_started, "get-started-training.png")

    job.epoch.connect(mid_training)
    wait_until(lambda: get_started.outcome is not None, "the first training", timeout_s=600)
    shoot(get_started, "get-started-result.png")
    assert len(panel.history) == settings.epochs
    get_started.close()
    window.close()
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--home", type=Path, help="a data folder with a champion (copied, never modified)"
    )
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="label folders")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="classifi-screenshots-") as scratch:
        home = Path(scratch) / "home"
        if args.home:
            shutil.copytree(args.home, home)
        else:
            print("Training a champion…", flush=True)
            train_home(home, args.dataset)
        print("Training a second version for the models view…", flush=True)
        classifi(home, "train", "--backbone", "efficientnet_lite0")
        settings = load_settings({}, overrides={"home": home})
        shots = take(settings, args.dataset, args.out)
        print("Getting started on a fresh data folder…", flush=True)
        shots += take_get_started(Path(scratch) / "fresh", args.dataset, args.out)
        for path, size in shots:
            print(
                f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}  {size // 1024} KB"
            )


if __name__ == "__main__":
    main()
