"""``classifi ingest SOURCE``: bring labelled photos into the store and the registry."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from classifi.cli import app_of
from classifi.cli._fanout import chunk_option, queue_option, raise_failures, wait_for_parts
from classifi.cli._output import echo_json, progress_bars
from core.ingest import DEFAULT_SOURCE, IngestReport

MAX_LISTED_SKIPS = 20


def _print_summary(console: Console, report: IngestReport) -> None:
    summary = Table(title="Ingest summary", show_header=False)
    summary.add_row("Added", str(report.added))
    summary.add_row("Already present", str(report.already_present))
    summary.add_row("Skipped", str(len(report.skipped)))
    for reason, count in report.skipped_by_reason().items():
        summary.add_row(f"  {reason}", str(count))
    console.print(summary)
    if not report.skipped:
        return
    skipped = Table(title="Skipped photos", show_lines=False)
    for column in ("Source", "Reason", "Why"):
        skipped.add_column(column, overflow="fold")
    for item in report.skipped[:MAX_LISTED_SKIPS]:
        skipped.add_row(item.source, item.reason, item.message)
    console.print(skipped)
    if len(report.skipped) > MAX_LISTED_SKIPS:
        console.print(
            f"... and {len(report.skipped) - MAX_LISTED_SKIPS} more (--json lists them all)."
        )


@click.command(
    "ingest",
    help=f"""Ingest labelled photos from SOURCE into the store and the registry.

    SOURCE is a folder with one sub-folder per label (e.g. dandelion/, grass/), a .csv
    manifest of url,label rows (http(s) URLs or paths relative to the manifest; header
    optional), or '{DEFAULT_SOURCE}' for the specification's 200+200 photos on GitHub.

    Each photo is checked, stored once under raw/<label>/<sha256>.<ext> and registered.
    Re-running is safe: photos already present are counted, not stored again. Bad photos
    are skipped with their reason and the run goes on; the exit code is 0 unless the
    source itself is missing or unreadable.

    With --queue the workers ingest it, each a part: the photos must be where every worker
    can read them (URLs, or a folder mounted at the same path on each).
    """,
)
@click.argument("source")
@queue_option("the ingest")
@chunk_option(256)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.pass_context
def command(ctx: click.Context, source: str, queued: bool, chunk_size: int, as_json: bool) -> None:
    app = app_of(ctx)
    listing = app.list_source(source)  # a bad source fails before any store is opened
    failed = None
    if queued:
        from worker.fanout import ingest_report, queue_ingest

        fanout = queue_ingest(app.settings, listing, chunk_size=chunk_size)
        wait_for_parts(app.settings, fanout, "Ingesting (parts)")
        report, failed = ingest_report(listing, fanout), fanout
    else:
        with progress_bars() as update:
            report = app.ingest(
                listing, progress=lambda done, total: update("Ingesting", done, total)
            )
    if as_json:
        echo_json(report.to_dict())
    else:
        _print_summary(Console(), report)
    if failed is not None:
        raise_failures(failed)
