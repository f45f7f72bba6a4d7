"""``classifi train``: train a new model on the registered photos."""

from __future__ import annotations

import json
from dataclasses import asdict

import click
from rich.console import Console
from rich.table import Table

from classifi.cli import settings_of
from classifi.cli._loop import training_progress
from core.config import Settings
from core.model.tracking import ui_command
from core.model.training import TrainingResult, train_model
from core.registry import Registry
from core.store import open_store


def _format(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _print_summary(console: Console, result: TrainingResult, settings: Settings) -> None:
    metrics = result.metrics
    summary = Table(title=f"Model version {result.version_id}", show_header=False)
    summary.add_column()
    summary.add_column(overflow="fold")  # the artifact key stays whole
    summary.add_row("Artifact", result.object_key)
    summary.add_row("Backbone", result.backbone_id)
    summary.add_row("Photos", ", ".join(f"{k}: {v}" for k, v in result.counts.items()))
    summary.add_row("Train / validation", f"{result.train_size} / {result.validation_size}")
    summary.add_row("Validation accuracy", _format(metrics["accuracy"]))
    summary.add_row("ROC-AUC", _format(metrics["roc_auc"]))
    summary.add_row("Calibration error (ECE)", _format(metrics["ece"]))
    summary.add_row("State", "champion" if result.became_champion else "candidate")
    console.print(summary)

    per_label = Table(title="Validation metrics per label")
    for column in ("Label", "Precision", "Recall", "F1", "Photos"):
        per_label.add_column(column, justify="left" if column == "Label" else "right")
    for label, values in metrics["per_label"].items():
        per_label.add_row(
            label,
            _format(values["precision"]),
            _format(values["recall"]),
            _format(values["f1"]),
            str(values["support"]),
        )
    console.print(per_label)

    confusion = Table(title="Confusion matrix (rows: true label, columns: predicted)")
    confusion.add_column("")
    for label in result.labels:
        confusion.add_column(label, justify="right")
    for label, row in zip(result.labels, metrics["confusion_matrix"], strict=True):
        confusion.add_row(label, *(str(count) for count in row))
    console.print(confusion)

    console.print(
        f"MLflow run {result.mlflow_run_id} (experiment {settings.mlflow_experiment!r}, "
        f"registered model {settings.mlflow_model_name!r} version {result.mlflow_version}) "
        f"is kept in {settings.mlflow_tracking_uri}\nOpen its UI with: {ui_command(settings)}",
        soft_wrap=True,  # a long URI stays on one line, ready to copy
        highlight=False,
    )


@click.command(
    "train",
    help="""Train a new model on the registered training photos.

    The frozen backbone embeds each photo once (cached in the registry); a linear head is
    trained on the embeddings, validated on a held-out split, tracked in MLflow, and saved
    as a new candidate version under model/YYYY-MM-DD/. The first model becomes champion.
    """,
)
@click.option(
    "--backbone",
    "backbone_id",
    help="auto, dinov2_vits14 or efficientnet_lite0 (default: the setting backbone).",
)
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs (default: setting epochs).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.pass_context
def command(ctx: click.Context, backbone_id: str | None, epochs: int | None, as_json: bool) -> None:
    settings = settings_of(ctx)
    overrides = {"backbone": backbone_id, "epochs": epochs}
    settings = settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    registry = Registry(settings.registry_url)
    store = open_store(settings)
    with training_progress() as progress:
        result = train_model(settings, registry, store, progress=progress, actor="cli")
    if as_json:
        payload = asdict(result)
        del payload["validation_photos"]  # the split is summarised by validation_size
        payload["mlflow_ui"] = ui_command(settings)
        click.echo(json.dumps(payload, indent=2))
    else:
        _print_summary(Console(), result, settings)
