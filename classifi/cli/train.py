"""``classifi train``: train a new model on the registered photos."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

from classifi.cli import app_of
from classifi.cli._output import echo_json, training_progress
from core.config import Settings
from core.model.tracking import ui_command

if TYPE_CHECKING:
    from core.model.training import TrainingResult


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
    # The setting, not App.train's backbone_id, so that "auto" is resolved as the setting is.
    app = app_of(ctx, **({"backbone": backbone_id} if backbone_id else {}))
    with training_progress() as progress:
        result = app.train(epochs=epochs, progress=progress)
    if as_json:
        payload = asdict(result)
        del payload["validation_photos"]  # the split is summarised by validation_size
        payload["mlflow_ui"] = ui_command(app.settings)
        echo_json(payload)
    else:
        _print_summary(Console(), result, app.settings)
