"""Experiment tracking with MLflow: one run per training, the model registered as a version.

Embedded, the tracking store is ``sqlite:///<home>/mlflow.db`` with artifacts under
``<home>/mlartifacts``; a deployment points ``mlflow_tracking_uri`` at a server. Everything
goes through an explicit ``MlflowClient`` for that URI: no global MLflow state, no environment.

The registered MLflow version holds the very ``.pth`` published to the store. It is not an
MLflow "flavor" model on purpose: a head is useless without its backbone, and the artifact
records which backbone and preprocessing it needs.

MLflow is optional: where it is not installed (the desktop bundle, which has no MLflow UI to
open either), a training is an :class:`UntrackedRun` and the registry alone records it; its
version keeps the params, metrics and per-epoch history all the same.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.config import Settings
from core.errors import ModelError
from core.model.runtimes import installed

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

CHAMPION_ALIAS = "champion"
MODEL_ARTIFACT_DIR = "model"


def _client(settings: Settings) -> MlflowClient:
    # The product never phones home: MLflow's usage telemetry would otherwise post from a
    # background thread and, offline, wait on the network at exit. A user may still opt in.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # A tracking server that is down should fail a training in seconds, not after MLflow's
    # default of 7 retries with exponential backoff (minutes).
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    from mlflow import MlflowClient

    # Importing mlflow configures its own loggers at INFO; keep them to warnings and above.
    logging.getLogger("mlflow").setLevel(max(logging.WARNING, logging.getLogger().level))
    uri = settings.mlflow_tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@contextmanager
def _mlflow_errors(settings: Settings, doing: str) -> Iterator[None]:
    """MLflow's failures as :class:`ModelError`, naming the tracking URI to check."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # MLflow's, not ours to fix
            yield
    except ModelError:
        raise
    except Exception as exc:  # MlflowException, SQLAlchemy, HTTP: all mean "tracking failed"
        raise ModelError(
            f"MLflow failed while {doing} at {settings.mlflow_tracking_uri}: {exc}. Check the "
            "setting mlflow_tracking_uri (CLASSIFI_MLFLOW_TRACKING_URI)."
        ) from exc


def _is_server(uri: str) -> bool:
    return uri.split(":", 1)[0] in ("http", "https", "databricks")


def _experiment_id(settings: Settings, client: MlflowClient) -> str:
    """The configured experiment, created on first use.

    A local backend (sqlite, a database, a folder) gets ``mlflow_artifact_root`` as its
    artifact location; a tracking server decides where its artifacts go.
    """
    from mlflow.exceptions import MlflowException

    name = settings.mlflow_experiment
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        location = (
            None if _is_server(settings.mlflow_tracking_uri) else settings.mlflow_artifact_root
        )
        try:
            return str(client.create_experiment(name, artifact_location=location))
        except MlflowException:
            experiment = client.get_experiment_by_name(name)  # created meanwhile by another run
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return str(experiment.experiment_id)


class TrainingRun:
    """One MLflow run: params, per-epoch metrics, validation metrics, the registered model."""

    def __init__(self, settings: Settings, client: MlflowClient, run_id: str) -> None:
        self.settings = settings
        self.client = client
        self.run_id = run_id

    @classmethod
    def start(cls, settings: Settings, *, run_name: str, params: dict[str, Any]) -> TrainingRun:
        with _mlflow_errors(settings, "starting a run"):
            from mlflow.entities import Param

            client = _client(settings)
            run = client.create_run(_experiment_id(settings, client), run_name=run_name)
            client.log_batch(
                run.info.run_id, params=[Param(k, str(v)) for k, v in sorted(params.items())]
            )
            return cls(settings, client, run.info.run_id)

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        with _mlflow_errors(self.settings, "logging metrics"):
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            self.client.log_batch(
                self.run_id,
                metrics=[Metric(name, value, now, step) for name, value in metrics.items()],
            )

    def log_dict(self, data: dict[str, Any], filename: str) -> None:
        with _mlflow_errors(self.settings, "logging a file"):
            self.client.log_dict(self.run_id, data, filename)

    def set_tags(self, tags: dict[str, Any]) -> None:
        with _mlflow_errors(self.settings, "tagging the run"):
            for key, value in tags.items():
                self.client.set_tag(self.run_id, key, str(value))

    def register_model(self, data: bytes, filename: str) -> str:
        """Log the artifact bytes under the run and register them; the new version number."""
        from mlflow.exceptions import MlflowException

        name = self.settings.mlflow_model_name
        with _mlflow_errors(self.settings, "registering the model"):
            with tempfile.TemporaryDirectory(prefix="classifi-mlflow-") as folder:
                path = Path(folder, filename)
                path.write_bytes(data)
                self.client.log_artifact(self.run_id, str(path), MODEL_ARTIFACT_DIR)
            try:
                self.client.create_registered_model(name)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            run = self.client.get_run(self.run_id)
            version = self.client.create_model_version(
                name, source=f"{run.info.artifact_uri}/{MODEL_ARTIFACT_DIR}", run_id=self.run_id
            )
            return str(version.version)

    def delete_model_version(self, version: str) -> None:
        with _mlflow_errors(self.settings, "deleting a model version"):
            self.client.delete_model_version(self.settings.mlflow_model_name, version)

    def finish(self, status: str = "FINISHED") -> None:
        """End the run as FINISHED, FAILED or KILLED."""
        with _mlflow_errors(self.settings, "ending the run"):
            self.client.set_terminated(self.run_id, status=status)


class UntrackedRun:
    """A training where MLflow is not installed: nothing is tracked, nothing fails for it."""

    run_id: str | None = None

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        pass

    def log_dict(self, data: dict[str, Any], filename: str) -> None:
        pass

    def set_tags(self, tags: dict[str, Any]) -> None:
        pass

    def register_model(self, data: bytes, filename: str) -> str | None:
        return None

    def delete_model_version(self, version: str) -> None:
        pass

    def finish(self, status: str = "FINISHED") -> None:
        pass


def mlflow_available() -> bool:
    return installed("mlflow")


def start_run(
    settings: Settings, *, run_name: str, params: dict[str, Any]
) -> TrainingRun | UntrackedRun:
    """A tracked run where MLflow is installed, else an untracked one (logged once)."""
    if mlflow_available():
        return TrainingRun.start(settings, run_name=run_name, params=params)
    log.info("MLflow is not installed here: the training is recorded in the registry only")
    return UntrackedRun()


def set_champion_alias(settings: Settings, mlflow_version: str) -> None:
    """Point the registered model's ``champion`` alias at ``mlflow_version``."""
    with _mlflow_errors(settings, "setting the champion alias"):
        _client(settings).set_registered_model_alias(
            settings.mlflow_model_name, CHAMPION_ALIAS, mlflow_version
        )


def ui_command(settings: Settings) -> str:
    """The command that opens MLflow's UI on this tracking store."""
    uri = settings.mlflow_tracking_uri
    if _is_server(uri):
        return f"open {uri} in a browser"
    return f"mlflow ui --backend-store-uri {uri}"
