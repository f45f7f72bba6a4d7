"""``classifi retrain-check [--force]``: the learning loop's retrain policy, now."""

from __future__ import annotations

import click

from classifi.cli import app_of
from classifi.cli._output import echo_json, training_progress


@click.command(
    "retrain-check",
    help="""Retrain when enough newly validated photos wait (setting retrain_min_new).

    When due: the validated photos move to raw/<label>/, only new photos are embedded, a
    candidate trains, and the promotion gate decides whether it becomes champion. When not
    due, says why. An interrupted earlier retrain is finished first.

    It holds the maintenance lock, so it never runs beside a worker's retrain or a repair:
    while one runs, it stops with an error that names it. The lock dies with its holder, so
    a killed retrain leaves nothing to clear and no flag is needed.
    """,
)
@click.option("--force", is_flag=True, help="Retrain even if fewer new photos wait.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@click.pass_context
def command(ctx: click.Context, force: bool, as_json: bool) -> None:
    with training_progress() as progress:
        outcome = app_of(ctx).retrain_check(force=force, progress=progress)
    if as_json:
        echo_json(outcome.to_dict())
        return
    if not outcome.due:
        click.echo(f"Not due: {outcome.reason}.")
        return
    click.echo(f"Retrained on {outcome.new_validated} new photo(s).")
    if outcome.candidate_version is not None:
        verdict = "promoted to champion" if outcome.promoted else "kept as refused"
        click.echo(f"Candidate version {outcome.candidate_version} {verdict}.")
    click.echo(f"Reason: {outcome.reason}.")
