"""Fetching one photo: reading a file or downloading a URL, with a size cap and a deadline,
then checking it (:func:`core.imaging.check_photo`). A photo that fails is a :class:`Skipped`
with its reason, never an exception: one bad photo does not stop an ingest."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests

from core.config import Settings
from core.errors import InvalidImage
from core.imaging import CheckedPhoto, check_photo
from core.ingest.sources import Skipped, SourceItem

CHUNK_BYTES = 64 * 1024


class _Skip(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Fetcher:
    """Reads local files and downloads URLs with a size cap; remembers hosts that are down."""

    def __init__(self, settings: Settings) -> None:
        self.max_bytes = settings.max_upload_bytes
        self.timeout = settings.download_timeout_s
        self._local = threading.local()
        self._down_hosts: set[str] = set()

    def read(self, location: str) -> bytes:
        if urlsplit(location).scheme in ("http", "https"):
            return self._download(location)
        return self._read_file(Path(location))

    def _too_large(self, size: int) -> _Skip:
        return _Skip(
            "too_large",
            f"The file is {size / 1e6:.1f} MB or more, above the {self.max_bytes / 1e6:.1f} MB "
            "limit (setting max_upload_bytes).",
        )

    def _read_file(self, path: Path) -> bytes:
        try:
            size = path.stat().st_size
            if size > self.max_bytes:
                raise self._too_large(size)
            return path.read_bytes()
        except FileNotFoundError:
            raise _Skip("missing", f"The file {path} does not exist.") from None
        except OSError as exc:
            raise _Skip("unreadable", f"Cannot read {path}: {exc.strerror or exc}") from None

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _download(self, url: str) -> bytes:
        host = urlsplit(url).netloc
        if host in self._down_hosts:
            raise _Skip("unreachable", f"{host} did not answer earlier in this run.")
        # The timeout bounds each socket wait; the deadline bounds a server that trickles bytes.
        deadline = time.monotonic() + self.timeout
        try:
            with self._session().get(url, stream=True, timeout=self.timeout) as response:
                if response.status_code >= 400:
                    raise _Skip("http_error", f"The server answered HTTP {response.status_code}.")
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > self.max_bytes:
                    raise self._too_large(int(declared))
                data = bytearray()
                for chunk in response.iter_content(CHUNK_BYTES):
                    data += chunk
                    if len(data) > self.max_bytes:
                        raise self._too_large(len(data))
                    if time.monotonic() > deadline:
                        raise requests.Timeout("the download took too long")
                return bytes(data)
        except (requests.ConnectionError, requests.Timeout) as exc:
            self._down_hosts.add(host)
            raise _Skip(
                "unreachable",
                f"{host} cannot be reached within {self.timeout:g} s "
                f"(setting download_timeout_s): {type(exc).__name__}.",
            ) from None
        except requests.RequestException as exc:
            raise _Skip("download_failed", f"The download failed: {exc}") from None


def fetch_photo(fetcher: Fetcher, settings: Settings, item: SourceItem) -> CheckedPhoto | Skipped:
    try:
        return check_photo(fetcher.read(item.location), settings)
    except _Skip as skip:
        return Skipped(item.location, skip.reason, skip.message)
    except InvalidImage as exc:
        return Skipped(item.location, exc.code, str(exc))
