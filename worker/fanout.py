"""Split a re-embed or a large ingest into parts queued for every worker, and wait for them.

Each part is one Huey task (``embed_chunk``, ``ingest_chunk``), taken by whichever worker is
free, so N workers on one Redis share the work. A part is safe to run twice (the embedding
cache keeps the first vector, and ingest is content-addressed), so a part retried after a
worker died, or run while a plain ``classifi reembed`` runs, costs time and changes nothing.

An ingest's photos must be readable by the workers at the same place: URLs, or paths on a
disk every worker mounts at that path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from huey.api import TaskWrapper

from core.config import Settings
from core.errors import TaskFailed
from core.ingest import IngestReport, Listing, Skipped
from core.loop.reembed import ReembedPlan, ReembedReport
from worker.tasks import task_result, worker_tasks

T = TypeVar("T")

#: Photos per part: a few embedding batches, so that parts spread over the workers and a
#: part lost with its worker costs little.
EMBED_CHUNK = 64
INGEST_CHUNK = 256
POLL_S = 0.5


def chunks(items: Sequence[T], size: int) -> list[list[T]]:
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


@dataclass
class FanOut:
    """The parts queued: their task ids, and what came back so far."""

    task_ids: list[str]
    results: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def done(self) -> int:
        return len(self.results) + len(self.failures)

    def wait(
        self,
        settings: Settings,
        progress: Callable[[int, int], None] | None = None,
        *,
        timeout: float | None = None,
    ) -> FanOut:
        """Wait until every part has finished or failed (``progress(done, total)`` as they
        do); TimeoutError after ``timeout`` seconds. Interrupting it stops the wait only:
        the workers carry on."""
        deadline = None if timeout is None else time.monotonic() + timeout
        waiting = list(self.task_ids)
        while waiting:
            for task_id in list(waiting):
                try:
                    result = task_result(settings, task_id, preserve=False)
                except TaskFailed as failed:
                    self.failures.append(str(failed))
                else:
                    if result is None:
                        continue
                    self.results.append(result)
                waiting.remove(task_id)
                if progress is not None:
                    progress(self.done, len(self.task_ids))
            if waiting:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{len(waiting)} of {len(self.task_ids)} parts still unfinished after "
                        f"{timeout:g} s: are the workers running?"
                    )
                time.sleep(POLL_S)
        return self


def _queue(task: TaskWrapper, calls: list[tuple[Any, ...]]) -> FanOut:
    return FanOut([str(task(*arguments).id) for arguments in calls])


def queue_reembed(
    settings: Settings, plan: ReembedPlan, *, chunk_size: int = EMBED_CHUNK
) -> FanOut:
    """One ``embed_chunk`` per ``chunk_size`` photos of the plan."""
    task = worker_tasks(settings).embed_chunk
    return _queue(
        task,
        [
            (plan.backbone, [list(photo) for photo in part])
            for part in chunks(plan.missing, chunk_size)
        ],
    )


def reembed_report(plan: ReembedPlan, fanout: FanOut) -> ReembedReport:
    return ReembedReport(
        plan.backbone, plan.photos, sum(result["embedded"] for result in fanout.results)
    )


def _absolute(location: str) -> str:
    """Workers run in other folders: a relative path would name another file there."""
    return location if "://" in location else str(Path(location).expanduser().resolve())


def queue_ingest(settings: Settings, listing: Listing, *, chunk_size: int = INGEST_CHUNK) -> FanOut:
    """One ``ingest_chunk`` per ``chunk_size`` photos of the listing."""
    task = worker_tasks(settings).ingest_chunk
    items = [{"location": _absolute(item.location), "label": item.label} for item in listing.items]
    return _queue(task, [(part,) for part in chunks(items, chunk_size)])


def ingest_report(listing: Listing, fanout: FanOut) -> IngestReport:
    """The parts' reports as one, with the entries the listing skipped without reading."""
    report = IngestReport(skipped=list(listing.skipped))
    for result in fanout.results:
        report.added += result["added"]
        report.already_present += result["already_present"]
        report.skipped.extend(Skipped(**item) for item in result["skipped_items"])
    return report
