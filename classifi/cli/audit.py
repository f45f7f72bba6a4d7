"""``classifi audit labels``: the training photos whose label looks wrong, most suspicious
first (cleanlab's label-issue finder on out-of-fold probabilities)."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from classifi.cli import app_of
from classifi.cli._output import echo_json


@click.group("audit", help="Find training photos whose label looks wrong (admin).")
def command() -> None:
    pass


@command.command(
    "labels",
    help="""List suspected mislabels in the training set, most suspicious first.

    Each head of a 5-fold cross-validation on the cached embeddings answers the photos it
    never saw; cleanlab finds the labels those answers contradict. Each row: photo_id,
    url_source, label, suggested_label, score (cleanlab's label quality: 0 is surely
    wrong). Fix one from the desktop's admin window (Suspected mislabels) or the edge
    server's POST /admin/label-audit/<photo_id>.
    """,
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of the rows.")
@click.pass_context
def labels_command(ctx: click.Context, as_json: bool) -> None:
    issues = app_of(ctx).audit_labels()
    if as_json:
        echo_json([issue.to_dict() for issue in issues])
        return
    if not issues:
        Console().print("No suspected mislabels.")
        return
    table = Table(title=f"{len(issues)} suspected mislabel(s), most suspicious first")
    for column in ("Photo", "Label", "Suggested", "Score", "Source"):
        table.add_column(column)
    for issue in issues:
        table.add_row(
            str(issue.photo_id),
            issue.label,
            issue.suggested_label,
            f"{issue.score:.3f}",
            issue.url_source,
        )
    Console(width=200).print(table)
