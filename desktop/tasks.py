"""Work off the GUI thread: ``run_task(fn, on_done, on_error)`` over the global QThreadPool.

``fn`` runs on a pool thread; its result (or the exception it raised) is handed back to
``on_done`` (or ``on_error``) on the GUI thread through a queued signal, so callbacks may touch
widgets freely. This is the only way the app runs anything slow.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from PySide6.QtCore import QEventLoop, QObject, QRunnable, QThreadPool, Signal, Slot

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
_bridge_lock = threading.Lock()


def _the_bridge() -> _Bridge:
    global _bridge
    with _bridge_lock:
        if _bridge is None:
            # Created on the first call, which is made from the GUI thread.
            _bridge = _Bridge()
        return _bridge


def _log_error(error: BaseException) -> None:
    log.error("background task failed", exc_info=error)


class _Task(QRunnable):
    def __init__(
        self,
        fn: Callable[[], Any],
        on_done: Callable[[Any], None],
        on_error: Callable[[BaseException], None],
        bridge: _Bridge,
    ) -> None:
        super().__init__()
        self.fn, self.on_done, self.on_error, self.bridge = fn, on_done, on_error, bridge

    def run(self) -> None:
        try:
            result = self.fn()
        except BaseException as error:  # a thread boundary: every failure goes back to the GUI
            self.bridge.finished.emit(self.on_error, error)
        else:
            self.bridge.finished.emit(self.on_done, result)


def run_task(
    fn: Callable[[], T],
    on_done: Callable[[T], None],
    on_error: Callable[[BaseException], None] | None = None,
    *,
    pool: QThreadPool | None = None,
) -> None:
    """Run ``fn()`` on a pool thread, then ``on_done(result)`` or ``on_error(exc)`` on the GUI
    thread. Without ``on_error`` a failure is logged."""
    task = _Task(fn, on_done, on_error or _log_error, _the_bridge())
    (pool or QThreadPool.globalInstance()).start(task)


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
