"""Work off the GUI thread: ``run_task(fn, on_done, on_error)`` over one Python thread pool.

``fn`` runs on a pool thread; its result (or the exception it raised) is handed back to
``on_done`` (or ``on_error``) on the GUI thread through a queued signal, so callbacks may touch
widgets freely. This is the only way the app runs anything slow.

Python threads, not QThreadPool's: PySide6 gives each Qt pool thread a Python thread state
per call and deletes it after, which crashes now and then (PySide6 6.12, Python 3.11).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from PySide6.QtCore import QEventLoop, QObject, Signal, Slot

log = logging.getLogger(__name__)

T = TypeVar("T")


class _Bridge(QObject):
    """Lives on the GUI thread; signals emitted from pool threads are queued to it."""

    finished = Signal(object, object)  # (callback, value)

    def __init__(self) -> None:
        super().__init__()
        self.finished.connect(self._deliver)

    @Slot(object, object)
    def _deliver(self, callback: Callable[[Any], None], value: Any) -> None:
        callback(value)


_bridge: _Bridge | None = None
_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def _the_bridge() -> _Bridge:
    global _bridge
    with _lock:
        if _bridge is None:
            # Created on the first call, which is made from the GUI thread.
            _bridge = _Bridge()
        return _bridge


def _the_pool() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max(2, os.cpu_count() or 2), "classifi-task")
        return _pool


def _log_error(error: BaseException) -> None:
    log.error("background task failed", exc_info=error)


def run_task(
    fn: Callable[[], T],
    on_done: Callable[[T], None],
    on_error: Callable[[BaseException], None] | None = None,
) -> None:
    """Run ``fn()`` on a pool thread, then ``on_done(result)`` or ``on_error(exc)`` on the GUI
    thread. Without ``on_error`` a failure is logged."""
    bridge, failed = _the_bridge(), on_error or _log_error

    def run() -> None:
        try:
            result = fn()
        except BaseException as error:  # a thread boundary: every failure goes back to the GUI
            bridge.finished.emit(failed, error)
        else:
            bridge.finished.emit(on_done, result)

    _the_pool().submit(run)


def wait_for_tasks() -> None:
    """Wait until every task started has ended (before exit: a usage count is written, and
    no pool thread runs while Python tears down)."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True)


def wait_for(fn: Callable[[], object]) -> BaseException | None:
    """Run ``fn()`` on a pool thread and wait for it in a local event loop, so the windows keep
    painting meanwhile (e.g. a sign-in checked over the network). Returns what it raised."""
    loop = QEventLoop()
    failures: list[BaseException] = []

    def failed(error: BaseException) -> None:
        failures.append(error)
        loop.quit()

    run_task(fn, lambda _: loop.quit(), failed)
    loop.exec()
    return failures[0] if failures else None


class CancelToken:
    """Set from the GUI thread, read by a running task between batches."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()
