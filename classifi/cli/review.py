"""``classifi review list|approve|reject|undo``: the admin's review of submissions."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from classifi.cli import app_of
from classifi.cli._output import echo_json
from core.wire import ReviewAction, ReviewDecision


@click.group("review", help="List, approve, correct or reject pending submissions (admin).")
def command() -> None:
    pass


@command.command("list", help="Pending photos, the most useful to review first.")
@click.option("--limit", type=click.IntRange(min=1), help="Show at most this many.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per photo.")
@click.pass_context
def list_command(ctx: click.Context, limit: int | None, as_json: bool) -> None:
    pending = app_of(ctx).pending(limit=limit)
    if as_json:
        echo_json([photo.to_dict() for photo in pending])
        return
    if not pending:
        Console().print("Nothing to review.")
        return
    table = Table(title=f"{len(pending)} pending photo(s), most useful first")
    for column in ("Id", "Proposed", "Prediction", "Confidence", "Note", "By"):
        table.add_column(column)
    for photo in pending:
        notes = []
        if photo.disagrees:
            notes.append("disagrees")
        if photo.near_duplicate_of is not None:
            notes.append(f"like #{photo.near_duplicate_of}")
        table.add_row(
            str(photo.id),
            photo.proposed_label or "",
            photo.prediction or "-",
            f"{photo.confidence:.0%}" if photo.confidence is not None else "-",
            ", ".join(notes),
            photo.submitted_by or "",
        )
    Console().print(table)


def _show(decisions: list[ReviewDecision], as_json: bool) -> None:
    if as_json:
        echo_json([decision.to_dict() for decision in decisions])
        return
    for decision in decisions:
        item = decision.to_dict()
        label = f" as {decision.new_label}" if decision.new_label else ""
        click.echo(f"Photo {decision.photo_id}: {decision.action}{label} -> {item['status']}")


@command.command("approve", help="Approve pending photos (by id) with their proposed label.")
@click.argument("photo_ids", nargs=-1, required=True, type=int)
@click.option("--label", "-l", help="Approve with this label instead (a correction).")
@click.option("--json", "as_json", is_flag=True, help="Print the decisions as JSON.")
@click.pass_context
def approve_command(
    ctx: click.Context, photo_ids: tuple[int, ...], label: str | None, as_json: bool
) -> None:
    _show(app_of(ctx).review(photo_ids, ReviewAction.APPROVE, label), as_json)


@command.command("reject", help="Reject pending photos (by id): they never train.")
@click.argument("photo_ids", nargs=-1, required=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the decisions as JSON.")
@click.pass_context
def reject_command(ctx: click.Context, photo_ids: tuple[int, ...], as_json: bool) -> None:
    _show(app_of(ctx).review(photo_ids, ReviewAction.REJECT), as_json)


@command.command("undo", help="Undo your last review decision: the photo is pending again.")
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
@click.pass_context
def undo_command(ctx: click.Context, as_json: bool) -> None:
    _show(app_of(ctx).undo(), as_json)
