"""The Prometheus metrics of the product, defined once for every front end.

The edge server's are module-level metrics in the default registry; the worker's live in a
registry of their own (:func:`worker_registry`), served by the worker.

Under several server processes (gunicorn workers) prometheus_client runs in multiprocess
mode: each process writes its values to files in ``PROMETHEUS_MULTIPROC_DIR`` and
:func:`render` merges them. That directory must be in the environment before
``prometheus_client`` is first imported, so the process that forks the workers (``classifi
serve``) sets it; :func:`mark_process_dead` is called when a worker exits.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core.errors import ClassifiError

if TYPE_CHECKING:
    from core.loop.monitoring import LoopSnapshot

log = logging.getLogger(__name__)

# prometheus_client chose its value store when it was imported; follow its choice.
MULTIPROCESS = values.ValueClass is not values.MutexValue

# The seed's dashboard: request counts by method and endpoint (predictions are POSTs).
API_REQUESTS = Counter(
    "api_requests",
    "API requests by HTTP method and endpoint (the seed's dashboard metric).",
    ["method", "endpoint"],
)
HTTP_REQUESTS = Counter(
    "classifi_http_requests",
    "HTTP requests by method, route (the URL rule, not the raw path) and status.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "classifi_http_request_duration_seconds",
    "Time to answer an HTTP request, per route.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
PREDICTIONS = Counter("classifi_predictions", "Photos classified, by predicted label.", ["label"])
CONFIDENCE = Histogram(
    "classifi_prediction_confidence",
    "Confidence of the predicted label.",
    buckets=(0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
)
PREDICTION_FLAGS = Counter(
    "classifi_prediction_flags",
    "Predictions flagged unsure (below the unsure threshold) or out of distribution.",
    ["flag"],
)
# An Info metric is not supported in multiprocess mode: a gauge set to 1 for the loaded model.
MODEL_INFO = Gauge(
    "classifi_model_info",
    "The champion model each live process serves (1), by version and backbone.",
    ["version", "backbone"],
    multiprocess_mode="livemax",
)
BATCH_SIZE = Histogram(
    "classifi_batch_size",
    "Photos per backbone pass in the micro-batcher.",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
QUEUE_DELAY = Histogram(
    "classifi_batch_queue_delay_seconds",
    "Time a photo waited in the micro-batcher before its backbone pass started.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
SUBMISSIONS = Counter("classifi_submissions", "Submitted photos, by outcome.", ["outcome"])
REVIEWS = Counter("classifi_reviews", "Reviewed submissions, by outcome.", ["outcome"])
CLIENT_EVENTS = Counter(
    "classifi_client_events",
    "Usage events reported by clients (the desktop in remote mode: client='desktop').",
    ["client", "event"],
)


class WebEvent(enum.StrEnum):
    """What the edge server's web page counts: its views and its buttons. A fixed vocabulary,
    so no request can add a series."""

    PAGE_VIEW = "page_view"
    ADMIN_PAGE_VIEW = "admin_page_view"
    PREDICT = "predict"
    PROPOSE_LABEL = "propose_label"
    ADMIN_SIGN_IN = "admin_sign_in"
    APPROVE = "approve"
    CORRECT = "correct"
    REJECT = "reject"
    UNDO = "undo"


WEB_EVENTS = Counter(
    "classifi_web_events",
    "Page views and button presses on the edge server's web page, by event.",
    ["event"],
)
for _event in WebEvent:  # every series exists from the start, at 0, for the dashboard
    WEB_EVENTS.labels(_event.value)


def count_web_event(event: WebEvent) -> None:
    WEB_EVENTS.labels(WebEvent(event).value).inc()


def set_model(version: int, backbone: str, previous: tuple[int, str] | None = None) -> None:
    """Record the served model; the previous one drops to 0 (multiprocess files keep series)."""
    if previous is not None and previous != (version, backbone):
        MODEL_INFO.labels(version=str(previous[0]), backbone=previous[1]).set(0)
    MODEL_INFO.labels(version=str(version), backbone=backbone).set(1)


def render() -> tuple[bytes, str]:
    """The exposition text of every metric (merged across processes when there are several)."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """Drop a dead worker's live gauges (counters and histograms keep its counts)."""
    if MULTIPROCESS:
        multiprocess.mark_process_dead(pid)


# --- The worker's ------------------------------------------------------------------------
#: Counted by the worker process that ran the job (a failure may be the registry's own, so
#: it cannot be read back from there); sum it over workers.
SCHEDULED_JOB_FAILURES = Counter(
    "classifi_scheduled_job_failures",
    "Scheduled (periodic) worker tasks that raised, by task.",
    ["task"],
    registry=None,  # registered in each worker_registry()
)


def _seconds(moment: datetime) -> float:
    """Unix time; the registry's naive times (SQLite's) are UTC."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


class LoopCollector(Collector):
    """The learning loop's metrics, read from the registry at each scrape: every worker on
    one registry exports the same values (take ``max`` over workers, not ``sum``)."""

    def __init__(self, snapshot: Callable[[], LoopSnapshot]) -> None:
        self.snapshot = snapshot

    def describe(self) -> list[Metric]:
        return []  # no registry query when registered: the families are known at scrape

    def collect(self) -> Iterator[Metric]:
        try:
            loop = self.snapshot()
        except ClassifiError as exc:  # the registry is down: export nothing rather than fail
            log.warning("worker metrics: the learning loop could not be read: %s", exc)
            return
        photos = GaugeMetricFamily(
            "classifi_photos", "Photos in the registry, by status.", labels=["status"]
        )
        for status, count in loop.photos.items():
            photos.add_metric([status], count)
        yield photos
        runs = CounterMetricFamily(
            "classifi_retrain_runs",
            "Retrain checks by outcome: promoted, refused (by the gate or training), not_due, "
            "failed, stood_down (another held the maintenance lock).",
            labels=["outcome"],
        )
        for outcome, count in loop.retrain_runs.items():
            runs.add_metric([outcome], count)
        yield runs
        # No value, no sample: a 0 would read as a champion of accuracy 0, or one from 1970.
        for name, documentation, value in (
            (
                "classifi_champion_accuracy",
                "Validation accuracy of the champion model.",
                loop.champion_accuracy,
            ),
            (
                "classifi_champion_promoted_timestamp_seconds",
                "When the champion was promoted (Unix time).",
                None if loop.champion_promoted_at is None else _seconds(loop.champion_promoted_at),
            ),
            (
                "classifi_last_retrain_check_timestamp_seconds",
                "When a retrain check last ran, due or not (Unix time).",
                None
                if loop.last_retrain_check_at is None
                else _seconds(loop.last_retrain_check_at),
            ),
        ):
            if value is not None:
                yield GaugeMetricFamily(name, documentation, value=value)


def worker_registry(snapshot: Callable[[], LoopSnapshot]) -> CollectorRegistry:
    """What a worker's /metrics serves: the loop (read at scrape) and its job failures."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LoopCollector(snapshot))
    registry.register(SCHEDULED_JOB_FAILURES)
    return registry
