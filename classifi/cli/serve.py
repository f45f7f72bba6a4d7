"""``classifi serve``: the edge server under gunicorn (waitress on Windows)."""

from __future__ import annotations

import click

from classifi.cli import settings_of
from core.config import is_loopback

HELP = """Run the edge server: REST API, health checks and Prometheus metrics.

It runs gunicorn (waitress where gunicorn cannot run), never a development server. Each
worker process loads the champion model once at start and picks up a newly promoted one
without a restart.

\b
Security:
- Admin routes need 'Authorization: Bearer <token>'. The first start generates the token,
  prints it once and stores only its hash; 'classifi admin-token reset' makes a new one.
- Prediction, submission and usage are open on 127.0.0.1 (the default). On any other
  interface they need a device key, sent as 'X-API-Key: <key>': 'classifi keys create
  NAME' makes one, 'classifi keys pair NAME' a short code a device trades for one. The
  first start there with no key makes one ('first-device') and prints it once. Plain keys
  in CLASSIFI_API_KEYS work too; CLASSIFI_ALLOW_ANONYMOUS=true opens the routes to anyone
  who can reach the port (a trusted LAN only).
- Every route is rate-limited per client address and per key (rate_limit_* settings);
  behind a reverse proxy set CLASSIFI_TRUSTED_PROXY=true so that its X-Forwarded-For counts.

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
    if not is_loopback(settings.host):
        if settings.allow_anonymous:
            click.secho(
                "allow_anonymous is on: anyone who can reach this port may classify, submit "
                "and report usage without a key. Use it on a trusted LAN only.",
                fg="yellow",
                err=True,
            )
        else:
            click.echo(
                "Prediction, submission and usage need a device key ('classifi keys list').",
                err=True,
            )
    from edge_server.wsgi import run  # the admin token and shared metrics start there

    run(settings)
