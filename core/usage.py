"""Usage counts (sessions, photos classified, submissions, reviews) kept in the registry.

Used when no Prometheus server scrapes the client, i.e. by the desktop in local mode. In
remote mode the desktop reports the same events to the edge server instead.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select

from core.errors import BadRequest, Conflict
from core.registry import Registry, UsageCounter
from core.wire import MAX_USAGE_COUNT, Usage, UsageEvent


def usage_report(report: Any) -> Usage:
    """A usage report (a dict, or JSON text) checked against the fixed vocabulary, so that no
    client can add a counter or a metric series; :class:`BadRequest` says what is wrong."""
    # Strict JSON for every caller: no "1" taken for 1, no true for a count.
    text = report if isinstance(report, str | bytes) else json.dumps(report)
    try:
        return Usage.model_validate_json(text, strict=True)
    except ValidationError as exc:
        wrong = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
    events = ", ".join(UsageEvent)
    if "event" in wrong:
        raise BadRequest(f"'event' must be one of {events}.", code="invalid_event")
    if "count" in wrong:
        raise BadRequest(
            f"'count' must be a whole number from 1 to {MAX_USAGE_COUNT}.", code="invalid_count"
        )
    raise BadRequest(
        f'Send a JSON object: {{"event": "{UsageEvent.SESSION}", "count": 1}}, with an event '
        f"among {events}.",
        code="invalid_json",
    )


def record_usage(registry: Registry, client: str, event: str, count: int = 1) -> None:
    """Add ``count`` to the ``(client, event)`` counter, creating it at first use."""
    report = usage_report({"event": event, "count": count})
    event, count = str(report.event), report.count
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
