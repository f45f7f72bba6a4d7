"""Micro-batching: concurrent single-photo requests share one backbone pass.

A request thread calls :meth:`MicroBatcher.submit` and blocks. One batching thread takes the
first waiting item, keeps collecting until ``max_delay`` has passed since that item arrived
or ``max_size`` items are waiting, runs the batch function once, and hands each caller its
own result (or the batch's exception). With ``max_size == 1`` there is no queue at all: the
caller runs the function itself, which is the seed's one-photo-per-pass behaviour.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from core import metrics

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class _Waiting(Generic[Item, Result]):
    item: Item
    future: Future[Result] = field(default_factory=Future)
    enqueued: float = field(default_factory=time.monotonic)


class MicroBatcher(Generic[Item, Result]):
    """Groups items from many threads into calls of ``run_batch`` (one result per item)."""

    def __init__(
        self,
        run_batch: Callable[[Sequence[Item]], Sequence[Result]],
        *,
        max_size: int,
        max_delay_s: float,
    ) -> None:
        if max_size < 1 or max_delay_s < 0:
            raise ValueError("max_size must be >= 1 and max_delay_s >= 0")
        self._run_batch = run_batch
        self.max_size = max_size
        self.max_delay_s = max_delay_s
        self._queue: queue.SimpleQueue[_Waiting[Item, Result] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False

    def submit(self, item: Item, timeout: float | None = None) -> Result:
        """The result for ``item``, computed in a batch with whatever else is waiting."""
        if self._closed:
            raise RuntimeError("The micro-batcher is closed.")
        if self.max_size == 1:
            return self._run_direct(item)
        self._ensure_thread()
        waiting: _Waiting[Item, Result] = _Waiting(item)
        self._queue.put(waiting)
        return waiting.future.result(timeout=timeout)

    def close(self) -> None:
        """Stop the batching thread after the items already queued."""
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()

    def _run_direct(self, item: Item) -> Result:
        metrics.QUEUE_DELAY.observe(0.0)
        metrics.BATCH_SIZE.observe(1)
        return self._run_batch([item])[0]

    def _ensure_thread(self) -> None:
        # Started on first use, so that it lives in the process that serves (after a fork).
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="micro-batcher", daemon=True
                )
                self._thread.start()

    def _collect(self, first: _Waiting[Item, Result]) -> list[_Waiting[Item, Result]]:
        batch = [first]
        deadline = first.enqueued + self.max_delay_s
        while len(batch) < self.max_size:
            remaining = deadline - time.monotonic()
            try:
                waiting = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if waiting is None:  # close() was called: finish this batch, then stop
                self._queue.put(None)
                break
            batch.append(waiting)
        return batch

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = self._collect(first)
            started = time.monotonic()
            for waiting in batch:
                metrics.QUEUE_DELAY.observe(started - waiting.enqueued)
            metrics.BATCH_SIZE.observe(len(batch))
            try:
                results = self._run_batch([waiting.item for waiting in batch])
                if len(results) != len(batch):
                    raise RuntimeError(
                        f"The batch function returned {len(results)} results for {len(batch)} items."
                    )
            except Exception as exc:  # the thread's boundary: every caller gets the error
                for waiting in batch:
                    waiting.future.set_exception(exc)
                continue
            for waiting, result in zip(batch, results, strict=True):
                waiting.future.set_result(result)
