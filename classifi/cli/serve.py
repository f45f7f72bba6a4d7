"""``classifi serve``: the edge server under gunicorn (waitress on Windows)."""

from __future__ import annotations

import click

from classifi.cli import settings_of

HELP = """Run the edge server: REST API, health checks and Prometheus metrics.

It runs gunicorn (waitress where gunicorn cannot run), never a development server. Each
worker process loads the champion model once at start and picks up a newly promoted one
without a restart.

\b
Security:
- Admin routes need 'Authorization: Bearer <token>'. The first start generates the token,
  prints it once and stores only its hash; 'classifi admin-token reset' makes a new one.
- Prediction and submission routes are open on 127.0.0.1 (the default). On any other
  interface they require one of CLASSIFI_API_KEYS (as 'X-API-Key: <key>') when keys are
  configured; with no key they stay open, and a warning says so.

\b
Try it:
  curl -X POST http://localhost:8000/predict -F "file=@photo.jpg"
"""


@click.command(help=HELP)
@click.option("--host", default=None, help="Interface to bind (default 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (default 8000).")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Worker processes.")
@click.option(
    "--threads", type=click.IntRange(min=1), default=None, help="Threads per worker process."
)
@click.pass_context
def command(
    ctx: click.Context,
    host: str | None,
    port: int | None,
    workers: int | None,
    threads: int | None,
) -> None:
    base = settings_of(ctx)
    changes = {
        "host": host,
        "port": port,
        "server_workers": workers,
        "server_threads": threads,
    }
    # Validated like every other source of settings (a bad port is refused the same way).
    settings = type(base)(**{**base.model_dump(), **{k: v for k, v in changes.items() if v}})

    click.echo(
        f"Serving on http://{settings.host}:{settings.port} "
        f"({settings.server_workers} worker(s)); Ctrl+C stops.",
        err=True,
    )
    from edge_server.wsgi import run  # the admin token and shared metrics start there

    run(settings)
