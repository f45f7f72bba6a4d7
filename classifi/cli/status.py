"""``classifi status``: where the stores live, photo counts and the current model."""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console
from rich.table import Table

from classifi.cli import app_of
from classifi.cli._output import echo_json
from core.wire import PhotoStatus


def _print_status(console: Console, report: dict[str, Any]) -> None:
    places = Table(title="Stores", show_header=False)
    places.add_column("store")
    places.add_column("where", overflow="fold")  # a URL is never cut short
    places.add_row("home", report["home"])
    for name, url in report["stores"].items():
        places.add_row(name, url)
    places.add_row("backbone setting", report["backbone"])
    in_use = report["backbone_in_use"]
    places.add_row("backbone in use", f"{in_use['id']} ({in_use['reason']})")
    runtime = report["runtime_in_use"]
    places.add_row(
        "runtime in use",
        f"{runtime['runtime'] or 'none yet'} (setting {runtime['setting']}: {runtime['reason']})",
    )
    index = report["similarity_index"]
    places.add_row(
        "similarity index",
        index["index"] if index["fallback"] is None else f"{index['index']} ({index['fallback']})",
    )
    console.print(places)

    statuses = [status.value for status in PhotoStatus]
    photos = report["photos"]
    counts = Table(title=f"Photos ({photos['total']})")
    counts.add_column("label")
    for status in statuses:
        counts.add_column(status, justify="right")
    counts.add_column("total", justify="right")
    for label, total in photos["by_label"].items():
        row = photos["by_label_and_status"].get(label, {})
        counts.add_row(label, *(str(row.get(status, 0)) for status in statuses), str(total))
    console.print(counts)

    champion = report["champion"]
    if champion is None:
        console.print("Current model: none yet (run 'classifi train').")
    else:
        accuracy = champion["accuracy"]
        console.print(
            f"Current model: version {champion['version']} ({champion['backbone']}), "
            f"accuracy {'n/a' if accuracy is None else f'{accuracy:.3f}'}, "
            f"created {champion['created_at']}"
        )
    if report["maintenance_lock"] is not None:
        console.print(f"Maintenance lock held: {report['maintenance_lock']}.")


@click.command(
    "status",
    help="""Show where the stores live, photo counts and the current model.

    \b
    --json prints one object with these keys (stable):
      home        the data folder
      stores      {registry, store, queue, mlflow}: URLs, passwords hidden
      labels      the configured labels
      backbone    the configured backbone setting
      backbone_in_use  {id, reason}: what training uses now, and why
      runtime_in_use   {setting, runtime, reason, candidates}: what the champion's (or the
                  backbone's) network runs on here, and why; runtime null until measured
      photos      {total, by_label: {label: n}, by_status: {status: n},
                   by_label_and_status: {label: {status: n}}}
                  (photos without a label yet count under "unlabelled")
      champion    null, or {version, backbone, accuracy, created_at, promoted_at}
      maintenance_lock  null, or who holds it: "retrain by pid N on HOST since T"
      similarity_index  {index: pgvector|sqlite-vec|exact, fallback: null or why the
                  index made for the registry could not be used, and what it adds}
    """,
)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON on stdout.")
@click.pass_context
def command(ctx: click.Context, as_json: bool) -> None:
    report = app_of(ctx).status()
    if as_json:
        echo_json(report)
    else:
        _print_status(Console(), report)
