"""The micro-batcher: concurrent submissions share calls, each caller gets its own answer."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from core.serving import MicroBatcher


class Recorder:
    """A batch function that doubles numbers and remembers each batch it was given."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[list[int]] = []
        self.gate = gate
        self.lock = threading.Lock()

    def __call__(self, items: Sequence[int]) -> list[int]:
        with self.lock:
            self.batches.append(list(items))
        if self.gate is not None:
            self.gate.wait()
        return [item * 2 for item in items]


def test_each_caller_gets_its_own_result_and_calls_are_shared() -> None:
    # The first batch is held until every caller is queued, so the rest must share calls.
    gate = threading.Event()
    recorder = Recorder(gate)
    batcher = MicroBatcher(recorder, max_size=8, max_delay_s=0.05)
    with ThreadPoolExecutor(max_workers=64) as pool:
        futures = [pool.submit(batcher.submit, n) for n in range(64)]
        # Wait until the first batch runs and everything else is queued behind it.
        while not recorder.batches or batcher._queue.qsize() + len(recorder.batches[0]) < 64:
            threading.Event().wait(0.01)
        gate.set()
        results = [future.result(timeout=30) for future in futures]
    batcher.close()
    assert results == [n * 2 for n in range(64)]
    assert sorted(n for batch in recorder.batches for n in batch) == list(range(64))
    # Everything after the first batch was waiting at once: full batches of 8.
    assert [len(batch) for batch in recorder.batches[1:-1]] == [8] * (len(recorder.batches) - 2)
    assert len(recorder.batches) <= 1 + 64 // 8 + 1


def test_batches_never_exceed_max_size() -> None:
    recorder = Recorder()
    batcher = MicroBatcher(recorder, max_size=3, max_delay_s=0.01)
    with ThreadPoolExecutor(max_workers=16) as pool:
        assert list(pool.map(batcher.submit, range(50))) == [n * 2 for n in range(50)]
    batcher.close()
    assert all(1 <= len(batch) <= 3 for batch in recorder.batches)


def test_max_size_one_runs_in_the_calling_thread() -> None:
    callers: list[str] = []

    def run(items: Sequence[int]) -> list[int]:
        callers.append(threading.current_thread().name)
        return list(items)

    batcher = MicroBatcher(run, max_size=1, max_delay_s=0.01)
    assert batcher.submit(7) == 7
    assert callers == [threading.current_thread().name]
    assert batcher._thread is None


def test_an_error_reaches_every_caller_of_the_batch_and_the_batcher_goes_on() -> None:
    def failing(items: Sequence[int]) -> list[int]:
        if any(item < 0 for item in items):
            raise ValueError("negative")
        return list(items)

    batcher = MicroBatcher(failing, max_size=4, max_delay_s=0.0)
    with pytest.raises(ValueError, match="negative"):
        batcher.submit(-1)
    assert batcher.submit(5) == 5
    batcher.close()


def test_a_wrong_number_of_results_is_an_error_not_a_hang() -> None:
    batcher = MicroBatcher(lambda items: [], max_size=4, max_delay_s=0.0)
    with pytest.raises(RuntimeError, match="0 results for 1"):
        batcher.submit(1, timeout=30)
    batcher.close()


def test_closed_batcher_refuses_work() -> None:
    batcher = MicroBatcher(Recorder(), max_size=4, max_delay_s=0.0)
    assert batcher.submit(1) == 2
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(1)


def test_invalid_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        MicroBatcher(Recorder(), max_size=0, max_delay_s=0.0)
