"""Usage counts (sessions, photos classified, submissions, reviews) kept in the registry.

Used when no Prometheus server scrapes the client, i.e. by the desktop in local mode. In
remote mode the desktop reports the same events to the edge server instead.
"""

from __future__ import annotations

import re

from sqlalchemy import select

from core.errors import Conflict
from core.registry import Registry, UsageCounter

_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


def record_usage(registry: Registry, client: str, event: str, count: int = 1) -> None:
    """Add ``count`` to the ``(client, event)`` counter, creating it at first use."""
    for name in (client, event):
        if not _NAME.fullmatch(name):
            raise ValueError(f"Usage names are short snake_case words, got {name!r}.")
    if count < 1:
        raise ValueError(f"A usage count is at least 1, got {count}.")
    for attempt in range(2):
        try:
            with registry.session() as session:
                row = session.get(UsageCounter, (client, event), with_for_update=True)
                if row is None:
                    session.add(UsageCounter(client=client, event=event, count=count))
                else:
                    row.count += count
            return
        except Conflict:  # another process created the row first: add to it instead
            if attempt:
                raise


def usage_counts(registry: Registry, client: str) -> dict[str, int]:
    """Every counter of ``client``, by event name."""
    with registry.session() as session:
        rows = session.execute(
            select(UsageCounter.event, UsageCounter.count).where(UsageCounter.client == client)
        ).all()
    return {event: count for event, count in rows}
