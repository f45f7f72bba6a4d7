"""``classifi doctor [--repair]``: check that the bucket and the registry agree."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.table import Table

from classifi.cli import app_of
from classifi.cli._output import echo_json


@click.command(
    "doctor",
    help="""Check bucket/registry consistency: unfinished moves, rows without objects,
    objects without rows, misplaced photos, damaged or orphan model files, stray temporary
    files, interrupted retrains. With --repair, fix what can be fixed. Exit code 1 when
    problems remain. A repair holds the maintenance lock: while a retrain runs, it stops
    with an error that names the retrain.
    """,
)
@click.option("--repair", is_flag=True, help="Repair what can be repaired.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def command(ctx: click.Context, repair: bool, as_json: bool) -> None:
    report = app_of(ctx).doctor(repair=repair)
    if as_json:
        echo_json(report.to_dict())
    else:
        console = Console()
        console.print(
            f"{report.photos} photo row(s), {report.objects} photo object(s), "
            f"{report.models} model version(s) checked."
        )
        if report.lock_holder:
            console.print(
                f"Maintenance lock held: {report.lock_holder}. What it is doing can show as "
                "unfinished below."
            )
        if report.issues:
            table = Table(title="Issues")
            for column in ("Kind", "Subject", "Problem", "Repaired"):
                table.add_column(column, overflow="fold")
            for issue in report.issues:
                table.add_row(
                    issue.kind, issue.subject, issue.message, "yes" if issue.repaired else "no"
                )
            console.print(table)
        console.print("Consistent." if report.clean else "Problems remain.")
    if not report.clean:
        sys.exit(1)
