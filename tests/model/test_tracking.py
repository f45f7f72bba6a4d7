"""MLflow tracking: the run, its params and metrics, the registered version, the champion alias."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from sqlalchemy import select

from classifi.cli import cli
from core.model.metrics import epoch_history
from core.model.training import train_model
from core.model.versions import champion, list_versions, set_champion
from core.registry import AuditEntry, ChampionHistory, ModelState
from tests.model.conftest import TrainedSystem

pytestmark = pytest.mark.slow


def test_the_run_records_params_metrics_and_the_registered_champion(
    trained: TrainedSystem, tmp_path: Path
) -> None:
    settings, result = trained.settings, trained.first
    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("DINOv2_Classifier")
    assert experiment is not None
    assert experiment.artifact_location == settings.mlflow_artifact_root

    run = client.get_run(result.mlflow_run_id)
    assert run.info.experiment_id == experiment.experiment_id
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["backbone"] == "efficientnet_lite0"
    assert float(params["learning_rate"]) == 0.003
    assert (params["epochs"], params["batch_size"], params["split_seed"]) == ("10", "32", "42")
    assert float(params["validation_fraction"]) == 0.3
    assert (params["photos_dandelion"], params["photos_grass"]) == ("170", "170")
    assert params["dataset_fingerprint"] == result.dataset_fingerprint
    assert run.data.tags["registry_version"] == str(result.version_id)

    metrics = run.data.metrics
    assert metrics["val_accuracy"] == pytest.approx(result.metrics["accuracy"])
    assert metrics["val_roc_auc"] == pytest.approx(result.metrics["roc_auc"])
    assert {"val_ece", "val_f1_dandelion", "val_precision_grass", "val_recall_grass"} <= set(
        metrics
    )
    losses = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in losses] == list(range(1, 11))
    assert [m.value for m in losses] == pytest.approx(
        [e.train_loss for e in epoch_history(result.metrics)]
    )
    assert len(client.get_metric_history(run.info.run_id, "train_accuracy")) == 10
    for name, field in (("epoch_val_loss", "val_loss"), ("epoch_val_accuracy", "val_accuracy")):
        logged = client.get_metric_history(run.info.run_id, name)
        assert [(m.step, m.value) for m in logged] == [
            (e.epoch, pytest.approx(getattr(e, field))) for e in epoch_history(result.metrics)
        ]

    registered = client.get_model_version_by_alias(settings.mlflow_model_name, "champion")
    assert str(registered.version) == result.mlflow_version
    assert registered.run_id == result.mlflow_run_id
    # The registered files are the very artifact published to the store.
    folder = Path(client.download_artifacts(run.info.run_id, "model", str(tmp_path)))
    (downloaded,) = folder.iterdir()
    assert downloaded.name == result.object_key.rsplit("/", 1)[1]
    stored = trained.store.get(result.object_key)
    assert hashlib.sha256(downloaded.read_bytes()).digest() == hashlib.sha256(stored).digest()


def test_set_champion_switches_in_the_registry_and_moves_the_alias(
    own_trained: TrainedSystem,
) -> None:
    settings, registry = own_trained.settings, own_trained.registry
    client = MlflowClient(settings.mlflow_tracking_uri)
    first = champion(registry)
    assert first is not None
    second = train_model(settings, registry, own_trained.store)
    assert not second.became_champion

    set_champion(settings, registry, second.version_id, actor="tester", reason="better on holdout")

    states = {v.id: v.state for v in list_versions(registry)}
    assert states[first.id] == ModelState.ARCHIVED
    assert states[second.version_id] == ModelState.CHAMPION
    current = champion(registry)
    assert current is not None and current.promoted_at is not None
    alias = client.get_model_version_by_alias(settings.mlflow_model_name, "champion")
    assert str(alias.version) == second.mlflow_version
    with registry.session() as session:
        history = session.scalars(select(ChampionHistory).order_by(ChampionHistory.id)).all()
        audit = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "promote").order_by(AuditEntry.id)
        ).all()
    assert [(h.model_version_id, h.ended_at is None) for h in history][-2:] == [
        (first.id, False),
        (second.version_id, True),
    ]
    assert audit[-1].actor == "tester"
    assert audit[-1].detail == {
        "reason": "better on holdout",
        "previous_champion": first.id,
        "backbone": "efficientnet_lite0",
    }


def test_the_registry_decides_when_mlflow_is_unreachable(
    own_trained: TrainedSystem, caplog: pytest.LogCaptureFixture
) -> None:
    current = champion(own_trained.registry)
    assert current is not None
    other = train_model(
        own_trained.settings.model_copy(update={"epochs": 2}),
        own_trained.registry,
        own_trained.store,
        promote_if_first=False,
    )
    unreachable = own_trained.settings.model_copy(
        update={"mlflow_tracking_uri": "sqlite:////proc/classifi-no-such-folder/mlflow.db"}
    )
    set_champion(unreachable, own_trained.registry, other.version_id, actor="tester", reason="test")
    assert champion(own_trained.registry).id == other.version_id  # type: ignore[union-attr]
    assert "MLflow's alias was not moved" in caplog.text


def test_train_command_prints_the_summary_and_json(own_trained: TrainedSystem) -> None:
    runner = CliRunner()
    env = {
        "CLASSIFI_HOME": str(own_trained.settings.home),
        "CLASSIFI_BACKBONE": "efficientnet_lite0",
    }

    table = runner.invoke(cli, ["train", "--epochs", "3"], env=env, catch_exceptions=False)
    assert table.exit_code == 0, table.output
    assert "Confusion matrix" in table.output
    assert (
        f"mlflow ui --backend-store-uri {own_trained.settings.mlflow_tracking_uri}" in table.output
    )

    as_json = runner.invoke(cli, ["train", "--json"], env=env, catch_exceptions=False)
    assert as_json.exit_code == 0, as_json.output
    payload = json.loads(as_json.output)
    assert payload["backbone_id"] == "efficientnet_lite0"
    assert payload["metrics"]["accuracy"] >= 0.93
    assert payload["became_champion"] is False
    assert payload["mlflow_ui"].startswith("mlflow ui --backend-store-uri sqlite:///")
    run = MlflowClient(own_trained.settings.mlflow_tracking_uri).get_run(payload["mlflow_run_id"])
    assert run.data.params["epochs"] == "10"
