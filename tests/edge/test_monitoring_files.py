"""The Prometheus and Grafana provisioning refer to the metrics the server really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client.metrics import MetricWrapperBase

from core import metrics

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"


def exported_names() -> set[str]:
    """Every sample name the metrics of core.metrics can export."""
    suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}
    return {
        metric._name + suffix
        for metric in vars(metrics).values()
        if isinstance(metric, MetricWrapperBase)
        for suffix in suffixes[metric._type]
    }


def test_prometheus_scrapes_every_edge_server_and_worker() -> None:
    config = yaml.safe_load((PACKAGING / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for job, port in (("edge_server", 8000), ("worker", 9100)):
        assert jobs[job]["metrics_path"] == "/metrics"
        # Every replica, found through DNS: scaled services have no fixed address.
        assert jobs[job]["dns_sd_configs"] == [
            {"names": [job], "type": "A", "port": port, "refresh_interval": "30s"}
        ]


#: What the worker exports (its collector reads them from the registry at scrape time).
WORKER_METRICS = {
    "classifi_photos",
    "classifi_retrain_runs_total",
    "classifi_champion_accuracy",
    "classifi_champion_promoted_timestamp_seconds",
    "classifi_last_retrain_check_timestamp_seconds",
    "classifi_scheduled_job_failures_total",
}


def test_dashboards_query_only_exported_metrics() -> None:
    exported = exported_names() | WORKER_METRICS
    dashboards = sorted((PACKAGING / "grafana" / "dashboards").glob("*.json"))
    assert {"api_dashboard.json", "learning_loop_dashboard.json"} <= {p.name for p in dashboards}
    used = set()
    for path in dashboards:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                used |= set(re.findall(r"\b(?:classifi_\w+|api_requests_\w+)", target["expr"]))
    assert used and used <= exported, used - exported
    # The seed's dashboard metric and every family the issue names are on a panel.
    for name in (
        "api_requests_total",
        "classifi_http_requests_total",
        "classifi_http_request_duration_seconds_bucket",
        "classifi_predictions_total",
        "classifi_prediction_confidence_bucket",
        "classifi_batch_size_sum",
        "classifi_batch_queue_delay_seconds_bucket",
        "classifi_model_info",
        "classifi_submissions_total",
        "classifi_reviews_total",
        "classifi_client_events_total",
    ):
        assert name in used, name


def test_grafana_provisioning_points_at_prometheus_and_the_dashboards() -> None:
    provisioning = PACKAGING / "grafana" / "provisioning"
    source = yaml.safe_load((provisioning / "datasources" / "datasources.yml").read_text())
    assert source["datasources"][0]["url"] == "http://prometheus:9090"
    boards = yaml.safe_load((provisioning / "dashboards" / "dashboards.yml").read_text())
    assert boards["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
