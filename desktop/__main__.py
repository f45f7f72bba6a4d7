"""The desktop app's launcher: ``python -m desktop`` and the entry point of the bundled app.

    python -m desktop [--home DIR] [--config FILE] [--remote URL | --local]
    python -m desktop --classify PHOTO_OR_FOLDER [...] [--json]

``--classify`` classifies without showing a window, through the main window's own pipeline
(the same run, backend and result rows as a drop), prints the results and exits: 0 when every
photo was classified, 1 otherwise. Scripts and the bundle's smoke test use it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from core.config import Settings, load_settings
from core.errors import ClassifiError


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="classifi-desktop",
        description="ClassifiImage desktop app: drop photos to classify them, submit "
        "corrections, review them (admin) and manage models.",
    )
    parser.add_argument("--home", type=Path, help="data folder (default: CLASSIFI_HOME)")
    parser.add_argument("--config", type=Path, help="TOML settings file")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--remote", metavar="URL", help="connect to this edge server")
    mode.add_argument("--local", action="store_true", help="work on this computer's data")
    parser.add_argument(
        "--classify",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="classify these photos or folders without opening a window, print the results",
    )
    parser.add_argument("--json", action="store_true", help="with --classify: print JSON")
    args = parser.parse_args(argv)
    if args.json and not args.classify:
        parser.error("--json goes with --classify")
    return args


def classify_headless(
    settings: Settings, paths: list[Path], *, remote_url: str | None, force_local: bool
) -> list[dict[str, Any]]:
    """Classify ``paths`` with an unshown main window; one dict per photo found."""
    from PySide6.QtCore import QEventLoop

    from desktop.app import choose_mode, create_application, preferences
    from desktop.main_window import MainWindow
    from desktop.results import RowState
    from desktop.tasks import wait_for_tasks

    create_application([sys.argv[0]])
    prefs = preferences(settings)
    choose_mode(prefs, remote_url, force_local)
    window = MainWindow(settings, prefs)
    failures: list[BaseException] = []
    loop = QEventLoop()
    window.classify_paths(paths)
    assert window.run is not None
    window.run.finished.connect(loop.quit)
    window.run.failed.connect(failures.append)
    window.run.failed.connect(loop.quit)
    loop.exec()  # the run's signals are queued, so none was missed before this point
    wait_for_tasks()  # usage counts are written before we exit
    if failures:
        raise failures[0]
    return [
        {
            "path": str(row.path),
            "label": row.label,
            "confidence": row.confidence,
            "probabilities": row.probabilities,
            "model_version": row.model_version,
            "error": row.error if row.state == RowState.ERROR else None,
        }
        for row in window.results.rows
    ]


def print_results(results: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(results, indent=2))
        return
    for result in results:
        if result["error"]:
            print(f"{result['path']}\terror: {result['error']}")
        else:
            print(f"{result['path']}\t{result['label']}\t{result['confidence']:.1%}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the backbone weights ship with the app
    overrides: dict[str, Any] = {"home": args.home} if args.home else {}
    try:
        settings = load_settings(os.environ, config_file=args.config, overrides=overrides)
        if not args.classify:
            from desktop.app import run

            return run(settings, remote_url=args.remote, force_local=args.local)
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # no window is shown
        results = classify_headless(
            settings, args.classify, remote_url=args.remote, force_local=args.local
        )
    except ClassifiError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    print_results(results, args.json)
    if not results:
        print("No photos found.", file=sys.stderr)
    return 0 if results and not any(result["error"] for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
