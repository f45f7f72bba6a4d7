"""The QApplication: theme, icon, preferences file, and the entry point ``run(settings)``."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPalette
from PySide6.QtWidgets import QApplication, QStyleFactory

from core.config import Settings
from core.memory import limit_malloc_arenas
from desktop import torch_preload
from desktop.tasks import wait_for_tasks

APP_NAME = "ClassifiImage"


def resources_dir() -> Path:
    """``resources/`` beside the package, or inside a PyInstaller bundle."""
    bundle = getattr(sys, "_MEIPASS", None)
    return (
        Path(bundle) / "resources" if bundle else Path(__file__).resolve().parents[1] / "resources"
    )


def shipped_model() -> Path | None:
    """The default model a bundle ships (``resources/default-model/*.pth``), if any."""
    found = sorted((resources_dir() / "default-model").glob("*.pth"))
    return found[0] if found else None


def with_shipped_runtimes(settings: Settings) -> Settings:
    """``settings`` that also search the exported backbone files a bundle ships
    (``resources/runtimes``), after the configured folders."""
    shipped = resources_dir() / "runtimes"
    if not shipped.is_dir() or shipped in settings.runtime_search_path:
        return settings
    return settings.model_copy(
        update={"runtime_search_path": (*settings.runtime_search_path, shipped)}
    )


def app_icon() -> QIcon:
    return QIcon(str(resources_dir() / "icons" / "classifi.svg"))


def preferences(settings: Settings) -> QSettings:
    """The desktop's own preferences (mode, server URL, window layout, last folder), kept in
    an INI file in the data folder so that each home (and each test) has its own."""
    return QSettings(str(settings.home / "desktop.ini"), QSettings.Format.IniFormat)


def _dark_palette() -> QPalette:
    palette = QPalette()
    window, base, text = QColor(37, 37, 40), QColor(28, 28, 30), QColor(232, 232, 232)
    disabled = QColor(128, 128, 128)
    for role, color in {
        QPalette.ColorRole.Window: window,
        QPalette.ColorRole.WindowText: text,
        QPalette.ColorRole.Base: base,
        QPalette.ColorRole.AlternateBase: window,
        QPalette.ColorRole.ToolTipBase: window,
        QPalette.ColorRole.ToolTipText: text,
        QPalette.ColorRole.PlaceholderText: disabled,
        QPalette.ColorRole.Text: text,
        QPalette.ColorRole.Button: QColor(48, 48, 52),
        QPalette.ColorRole.ButtonText: text,
        QPalette.ColorRole.BrightText: QColor(255, 80, 80),
        QPalette.ColorRole.Link: QColor(100, 181, 246),
        QPalette.ColorRole.Highlight: QColor(46, 125, 50),
        QPalette.ColorRole.HighlightedText: QColor(255, 255, 255),
    }.items():
        palette.setColor(role, color)
    for role in (
        QPalette.ColorRole.WindowText,
        QPalette.ColorRole.Text,
        QPalette.ColorRole.ButtonText,
    ):
        palette.setColor(QPalette.ColorGroup.Disabled, role, disabled)
    return palette


def apply_theme(app: QApplication) -> None:
    """Fusion everywhere (it looks the same on every OS), light or dark as the system is."""
    style = QStyleFactory.create("Fusion")
    app.setStyle(style)
    dark = QGuiApplication.styleHints().colorScheme() == Qt.ColorScheme.Dark
    app.setPalette(_dark_palette() if dark else style.standardPalette())


def create_application(argv: list[str] | None = None) -> QApplication:
    """The one QApplication (reused if it exists, as under pytest-qt), themed and named: the
    start of every desktop process. Its pool threads decode photos of every size, so glibc's
    malloc arenas are capped first (core.memory); torch, imported later off the GUI thread,
    loads its libraries without freezing it."""
    limit_malloc_arenas()
    torch_preload.install()
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        app = QApplication(argv if argv is not None else sys.argv)
    app.setApplicationName(APP_NAME)
    app.setOrganizationName(APP_NAME)
    app.setWindowIcon(app_icon())
    apply_theme(app)
    # Follow the system when the user switches between light and dark while we run.
    QGuiApplication.styleHints().colorSchemeChanged.connect(lambda _scheme: apply_theme(app))
    return app


def choose_mode(prefs: QSettings, remote_url: str | None, force_local: bool) -> None:
    """Remember the mode asked for on the command line; without one the saved one stays."""
    from desktop.backends import LOCAL, REMOTE

    if remote_url:
        prefs.setValue("mode", REMOTE)
        prefs.setValue("server/url", remote_url.rstrip("/"))
    elif force_local:
        prefs.setValue("mode", LOCAL)


def run(settings: Settings, *, remote_url: str | None = None, force_local: bool = False) -> int:
    """Open the main window and run the event loop until it closes. ``remote_url`` or
    ``force_local`` choose the mode (and are remembered), else the saved preference does."""
    from desktop.main_window import MainWindow

    app = create_application()
    prefs = preferences(settings)
    choose_mode(prefs, remote_url, force_local)
    window = MainWindow(settings, prefs)
    window.show()
    code = app.exec()
    # Background tasks (a usage count, the last batch) end before Python tears down: a pool
    # thread still running then crashes the process.
    wait_for_tasks()
    return code
