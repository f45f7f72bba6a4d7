"""``classifi reembed``: fill the embedding cache of a backbone, here or on every worker."""

from __future__ import annotations

import click

from classifi.cli import app_of
from classifi.cli._fanout import chunk_option, queue_option, raise_failures, wait_for_parts
from classifi.cli._output import echo_json
from core.loop.reembed import ReembedReport


@click.command(
    "reembed",
    help="""Embed every stored photo missing from the embedding cache of a backbone (the
    configured one by default), e.g. before switching to another backbone. Photos already
    cached are not embedded again, so running it twice costs nothing; the similarity index
    takes the new vectors as they are cached.

    Without --queue it runs here, under the maintenance lock. With --queue the missing
    photos are split into parts for every worker on the queue, which embed them side by
    side; a part run twice changes nothing.
    """,
)
@click.option("--backbone", "backbone_id", help="Backbone id (default: the configured one).")
@queue_option("the re-embed")
@chunk_option(64)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.pass_context
def command(
    ctx: click.Context, backbone_id: str | None, queued: bool, chunk_size: int, as_json: bool
) -> None:
    app = app_of(ctx)
    failed = None
    if queued:
        from worker.fanout import queue_reembed, reembed_report

        plan = app.plan_reembed(backbone_id)
        fanout = queue_reembed(app.settings, plan, chunk_size=chunk_size)
        wait_for_parts(app.settings, fanout, "Embedding (parts)")
        report, failed = reembed_report(plan, fanout), fanout
    else:
        report = app.reembed(backbone_id)
    _print(report, as_json)
    if failed is not None:
        raise_failures(failed)


def _print(report: ReembedReport, as_json: bool) -> None:
    if as_json:
        echo_json(report.to_dict())
        return
    click.echo(
        f"{report.backbone}: {report.embedded} photo(s) embedded, "
        f"{report.photos - report.embedded} already cached, of {report.photos} stored."
    )
