"""``classifi export``: a model for other apps (``--format onnx``), or the exported backbone
files to ship with an image or bundle (``--format runtimes``)."""

from __future__ import annotations

from pathlib import Path

import click

from classifi.cli import app_of

FORMATS = ("onnx", "runtimes")


@click.command(
    "export",
    help="""Export a model, or the backbone files prediction runs on.

    \b
    --format onnx (needs --out): the champion (or --version N) as one self-contained
      ONNX file, preprocessed image tensor in ("pixels", N x 3 x size x size float32),
      label probabilities out ("probabilities"), beside a JSON sidecar: labels,
      preprocessing (size, resize, mean, std), version, backbone, metrics and the file's
      sha256. README.md ("Use a model in your own app") shows the onnxruntime + Pillow
      lines that use it.
    --format runtimes: the champion's backbone (or --backbone ID) exported to ONNX now
      (torch needed) into <home>/runtimes/, and copied into --out when given: ship that
      folder and point the setting runtime_search_path at it, and processes that only
      predict run without torch.
    """,
)
@click.option("--format", "export_format", type=click.Choice(FORMATS), default="onnx")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Folder to write.")
@click.option("--version", "version", type=click.IntRange(min=1), help="Model version (onnx).")
@click.option("--backbone", "backbone_id", help="Backbone id (runtimes).")
@click.pass_context
def command(
    ctx: click.Context,
    export_format: str,
    out: Path | None,
    version: int | None,
    backbone_id: str | None,
) -> None:
    app = app_of(ctx)
    if export_format == "onnx":
        if out is None:
            raise click.UsageError("--format onnx needs --out DIR.")
        if backbone_id is not None:
            raise click.UsageError("--backbone goes with --format runtimes.")
        exported = app.export_model(out, version=version)
        click.echo(f"{exported.onnx}\n{exported.sidecar}")
        return
    if version is not None:
        raise click.UsageError("--version goes with --format onnx.")
    export = app.export_runtimes(backbone_id=backbone_id, out=out)
    for path in (export.onnx, export.probe_path, export.sidecar):
        click.echo(str(path))
