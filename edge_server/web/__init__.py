"""The edge server's web page: a phone-friendly page to classify photos (``/``) and an admin
page to review submissions (``/admin``).

Server-rendered templates and a few lines of plain JavaScript, all served from here (no
framework, no CDN: the server works offline); every form also works with JavaScript off.
"""

from __future__ import annotations

from flask import Flask

from edge_server.services import Services
from edge_server.web import admin, page  # noqa: F401  (their routes join the blueprint)
from edge_server.web.blueprint import bp
from edge_server.web.security import configure_sessions


def register(app: Flask, services: Services) -> None:
    """Add the pages to ``app``, their sessions signed with the registry's key."""
    configure_sessions(app, services.app.session_key())
    app.register_blueprint(bp)
