"""The desktop app's launcher: ``python -m desktop`` and the entry point of the bundled app.

    python -m desktop [--home DIR] [--config FILE] [--remote URL | --local]
    python -m desktop --classify PHOTO_OR_FOLDER [...] [--json]
    python -m desktop --import FOLDER [...]

``--classify`` classifies without showing a window, through the main window's own pipeline
(the same run, backend and result rows as a drop), prints the results and exits: 0 when every
photo was classified, 1 otherwise. ``--import`` does Get started without a window: the
preview, then the import and the training in a child process, as the Get started window does;
it prints the outcome as JSON. Scripts and the bundle's smoke test use both.

The exported backbone files and the default model a bundle ships are found in its
``resources`` folder; its long jobs run in child processes started with multiprocessing's
spawn (``freeze_support`` below lets the bundle's executable be such a child).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
from pathlib import Path
from typing import Any

from core.config import Settings, load_settings
from core.errors import ClassifiError, TrainingRefused


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
    parser.add_argument(
        "--import",
        dest="import_folders",
        nargs="+",
        type=Path,
        metavar="FOLDER",
        help="import labelled folders (one sub-folder per label) and train, without a window",
    )
    args = parser.parse_args(argv)
    if args.json and not args.classify:
        parser.error("--json goes with --classify")
    if args.import_folders and (args.classify or args.remote):
        parser.error("--import works alone, on this computer's data")
    return args


def import_headless(settings: Settings, folders: list[Path]) -> dict[str, Any]:
    """Get started with an unshown window: preview ``folders``, import them and train."""
    from PySide6.QtCore import QEventLoop

    from core.app.getting_started import ImportPreview
    from desktop.app import choose_mode, create_application, preferences
    from desktop.get_started import open_get_started
    from desktop.main_window import MainWindow

    create_application([sys.argv[0]])
    prefs = preferences(settings)
    choose_mode(prefs, None, True)
    window = MainWindow(settings, prefs)
    loop = QEventLoop()
    answers: list[Any] = []
    found: list[ImportPreview] = []

    def previewed(preview: ImportPreview) -> None:
        found.append(preview)
        if preview.ok:
            get_started.start_import()
        else:
            answers.append(TrainingRefused(" ".join(preview.problems)))
            loop.quit()

    get_started = open_get_started(window)
    get_started.previewed.connect(previewed)
    for signal in (get_started.finished, get_started.failed):
        signal.connect(answers.append)
        signal.connect(loop.quit)
    get_started.preview_paths(folders)
    loop.exec()
    if isinstance(answers[0], BaseException):
        raise answers[0]
    return {"preview": found[0].to_dict(), "outcome": answers[0]}


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
        from desktop.app import with_shipped_runtimes

        settings = with_shipped_runtimes(
            load_settings(os.environ, config_file=args.config, overrides=overrides)
        )
        if args.import_folders:
            os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # no window is shown
            print(json.dumps(import_headless(settings, args.import_folders), indent=2))
            return 0
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
    multiprocessing.freeze_support()  # in a bundle, a job's child process stops here
    sys.exit(main())
