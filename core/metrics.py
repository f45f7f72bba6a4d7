"""The Prometheus metrics of the product, defined once for every front end.

Under several server processes (gunicorn workers) prometheus_client runs in multiprocess
mode: each process writes its values to files in ``PROMETHEUS_MULTIPROC_DIR`` and
:func:`render` merges them. That directory must be in the environment before
``prometheus_client`` is first imported, so the process that forks the workers (``classifi
serve``) sets it; :func:`mark_process_dead` is called when a worker exits.
"""

from __future__ import annotations

import enum

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
