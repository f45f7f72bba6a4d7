"""``classifi models list|promote V|rollback|history``: the model versions (admin)."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from classifi.cli import app_of
from classifi.cli._output import echo_json
from core.wire import ModelSummary


@click.group("models", help="List model versions, promote one by hand, or roll back.")
def command() -> None:
    pass


def _accuracy(summary: ModelSummary) -> str:
    accuracy = summary.metrics.get("accuracy")
    return f"{accuracy:.3f}" if isinstance(accuracy, float) else "-"


@command.command("list", help="Every version, newest first, with its state and metrics.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per version.")
@click.pass_context
def list_command(ctx: click.Context, as_json: bool) -> None:
    models = app_of(ctx).versions()
    if as_json:
        echo_json([model.to_dict() for model in models])
        return
    if not models:
        Console().print("No model yet: run `classifi train`.")
        return
    table = Table(title="Model versions")
    for column in ("Version", "State", "Backbone", "Accuracy", "Created", "Promoted"):
        table.add_column(column)
    for model in models:
        table.add_row(
            str(model.version),
            str(model.state),
            model.backbone,
            _accuracy(model),
            f"{model.created_at:%Y-%m-%d %H:%M}",
            f"{model.promoted_at:%Y-%m-%d %H:%M}" if model.promoted_at else "",
        )
    Console().print(table)


@command.command("promote", help="Make VERSION the champion (overrules the gate).")
@click.argument("version", type=int)
@click.option("--reason", help="Why, for the history (default: promoted by <you>).")
@click.option("--json", "as_json", is_flag=True, help="Print the new champion as JSON.")
@click.pass_context
def promote_command(ctx: click.Context, version: int, reason: str | None, as_json: bool) -> None:
    chosen = app_of(ctx).promote(version, reason=reason)
    if as_json:
        echo_json(chosen.to_dict())
    else:
        click.echo(f"Version {chosen.version} is the champion.")


@command.command("rollback", help="Make the previous champion the champion again.")
@click.option("--json", "as_json", is_flag=True, help="Print the new champion as JSON.")
@click.pass_context
def rollback_command(ctx: click.Context, as_json: bool) -> None:
    chosen = app_of(ctx).rollback()
    if as_json:
        echo_json(chosen.to_dict())
    else:
        click.echo(f"Rolled back: version {chosen.version} is the champion again.")


@command.command("history", help="Which version was champion when, newest first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per period.")
@click.pass_context
def history_command(ctx: click.Context, as_json: bool) -> None:
    periods = app_of(ctx).champion_history()
    if as_json:
        echo_json([period.to_dict() for period in periods])
        return
    table = Table(title="Champion history")
    for column in ("Version", "From", "Until", "By", "Reason"):
        table.add_column(column, overflow="fold")
    for period in periods:
        table.add_row(
            str(period.version),
            f"{period.started_at:%Y-%m-%d %H:%M}",
            f"{period.ended_at:%Y-%m-%d %H:%M}" if period.ended_at else "now",
            period.actor,
            period.reason,
        )
    Console().print(table)
