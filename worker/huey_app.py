"""The Huey instance, built from the settings.

``settings.queue_url`` picks the storage: ``sqlite:///path`` (the embedded default, one
consumer process per file) or ``redis://host:port/db`` for several workers sharing the load.
Schedules are 5-field cron strings in the machine's local time, like cron's.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

from huey import Huey, RedisExpireHuey, SqliteHuey, crontab

from core.config import Settings
from core.errors import ConfigError

QUEUE_NAME = "classifi"
CRON_FIELDS = ("minute", "hour", "day", "month", "day_of_week")


def create_huey(settings: Settings) -> Huey:
    """SqliteHuey on a file, or RedisExpireHuey on Redis."""
    url = settings.queue_url
    scheme = urlsplit(url).scheme
    if scheme in ("redis", "rediss", "unix"):
        # Results expire, so those nobody reads do not pile up in a shared Redis.
        return RedisExpireHuey(QUEUE_NAME, url=url, utc=False)
    if scheme == "sqlite":
        path = Path(unquote(urlsplit(url).path))
        if not str(path).strip("/"):
            raise ConfigError(f"Queue URL {url!r} names no file: use sqlite:////path/queue.db.")
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteHuey(QUEUE_NAME, filename=str(path), utc=False)
    raise ConfigError(
        f"Unsupported queue URL {url!r} (setting queue_url): use sqlite:////path/queue.db "
        "or redis://host:6379/0."
    )


def parse_cron(expression: str, setting: str) -> Callable[[datetime], bool]:
    """A huey ``crontab`` from ``"minute hour day month day_of_week"`` (0 or 7 = Sunday)."""
    fields = expression.split()
    if len(fields) != len(CRON_FIELDS):
        raise ConfigError(
            f"Setting {setting} = {expression!r} is not a 5-field cron schedule "
            "'minute hour day month day_of_week', e.g. '0 0 * * 6' for Saturday 00:00."
        )
    try:
        return crontab(**dict(zip(CRON_FIELDS, fields, strict=True)), strict=True)
    except ValueError as exc:
        raise ConfigError(
            f"Setting {setting} = {expression!r} is not a valid cron schedule ({exc}); use "
            "numbers, '*', '*/n', 'a-b' and 'a,b' (no month or day names)."
        ) from None
