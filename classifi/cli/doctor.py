"""``classifi doctor [--repair]``: check that the bucket and the registry agree."""

from __future__ import annotations

import sys

import click
from huey.exceptions import TaskLockedException
from rich.console import Console
from rich.table import Table

from classifi.cli import settings_of
from classifi.cli._loop import echo_json, services
from core.errors import Conflict
from core.loop.doctor import check_consistency
from worker.tasks import build_tasks


@click.command(
    "doctor",
    help="""Check bucket/registry consistency: unfinished moves, rows without objects,
    objects without rows, misplaced photos, damaged or orphan model files, stray temporary
    files, interrupted retrains. With --repair, fix what can be fixed. Exit code 1 when
    problems remain.
    """,
)
@click.option("--repair", is_flag=True, help="Repair what can be repaired.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def command(ctx: click.Context, repair: bool, as_json: bool) -> None:
    settings = settings_of(ctx)
    registry, store = services(settings)
    if repair:
        # Repairs must not race a retrain's moves and model files: hold its lock.
        tasks = build_tasks(settings)
        try:
            with tasks.retrain_lock():
                report = check_consistency(settings, registry, store, repair=True)
        except TaskLockedException:
            raise Conflict(
                "A retrain holds the lock; repair once it has finished (`classifi "
                "retrain-check --break-lock` clears a lock left by a killed process)."
            ) from None
    else:
        report = check_consistency(settings, registry, store)
    if as_json:
        echo_json(report.to_dict())
    else:
        console = Console()
        console.print(
            f"{report.photos} photo row(s), {report.objects} photo object(s), "
            f"{report.models} model version(s) checked."
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
