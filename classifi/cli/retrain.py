"""``classifi retrain-check [--force]``: the learning loop's retrain policy, now."""

from __future__ import annotations

import click

from classifi.cli import settings_of
from classifi.cli._loop import echo_json, os_actor, training_progress
from core.errors import Conflict
from worker.tasks import RETRAIN_LOCK, build_tasks


@click.command(
    "retrain-check",
    help="""Retrain when enough newly validated photos wait (setting retrain_min_new).

    When due: the validated photos move to raw/<label>/, only new photos are embedded, a
    candidate trains, and the promotion gate decides whether it becomes champion. When not
    due, says why. An interrupted earlier retrain is finished first. Holds the worker's
    retrain lock, so it never runs beside a worker's retrain.
    """,
)
@click.option("--force", is_flag=True, help="Retrain even if fewer new photos wait.")
@click.option(
    "--break-lock",
    is_flag=True,
    help="Clear a retrain lock left by a killed process first (only when no retrain runs).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@click.pass_context
def command(ctx: click.Context, force: bool, break_lock: bool, as_json: bool) -> None:
    settings = settings_of(ctx)
    tasks = build_tasks(settings)
    if break_lock:
        tasks.huey.flush_locks(RETRAIN_LOCK)
    with training_progress() as progress:
        outcome = tasks.run_retrain_check(force=force, actor=os_actor(), progress=progress)
    if outcome.get("locked"):
        raise Conflict(
            "Another retrain holds the lock (a worker, or a process that was killed). If none "
            "is running, add --break-lock."
        )
    if as_json:
        echo_json(outcome)
        return
    if not outcome["due"]:
        click.echo(f"Not due: {outcome['reason']}.")
        return
    click.echo(f"Retrained on {outcome['new_validated']} new photo(s).")
    if outcome["candidate_version"] is not None:
        verdict = "promoted to champion" if outcome["promoted"] else "kept as refused"
        click.echo(f"Candidate version {outcome['candidate_version']} {verdict}.")
    click.echo(f"Reason: {outcome['reason']}.")
