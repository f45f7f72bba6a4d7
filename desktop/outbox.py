"""Submissions made while the edge server is unreachable wait here until it answers again.

Each photo is written to ``<home>/desktop-outbox/<sha256><ext>``, then the index
``outbox.json`` is rewritten atomically (temporary file, fsync, rename). A crash between the
two leaves at worst an unlisted photo file, which the next write removes: nothing listed is
ever missing, and nothing is sent twice because entries leave the index only once sent.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from core.store.local import write_atomically


@dataclass(frozen=True)
class QueuedSubmission:
    sha256: str
    filename: str  # the photo's original name, sent along with it
    label: str
    file: str  # the stored copy's name inside the outbox folder
    queued_at: str


class Outbox:
    """A small durable queue of submissions, safe to use from several threads."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.index = folder / "outbox.json"
        self._lock = threading.Lock()

    def entries(self) -> list[QueuedSubmission]:
        with self._lock:
            return self._read()

    def __len__(self) -> int:
        return len(self.entries())

    def add(self, data: bytes, sha256: str, extension: str, filename: str, label: str) -> None:
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            entries = self._read()
            if any(entry.sha256 == sha256 and entry.label == label for entry in entries):
                return  # already waiting
            name = f"{sha256}{extension}"
            write_atomically(self.folder / name, data)
            entries.append(
                QueuedSubmission(sha256, filename, label, name, datetime.now(UTC).isoformat())
            )
            self._write(entries)

    def photo(self, entry: QueuedSubmission) -> bytes:
        return (self.folder / entry.file).read_bytes()

    def remove(self, entry: QueuedSubmission) -> None:
        """Forget a sent entry; its photo file goes once no other entry uses it."""
        with self._lock:
            entries = [item for item in self._read() if item != entry]
            self._write(entries)

    def _read(self) -> list[QueuedSubmission]:
        try:
            raw = json.loads(self.index.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        return [QueuedSubmission(**item) for item in raw]

    def _write(self, entries: list[QueuedSubmission]) -> None:
        payload = json.dumps([asdict(entry) for entry in entries], indent=1).encode("utf-8")
        write_atomically(self.index, payload)
        # Photo files no entry names (sent, or left by a crash before the index was written).
        keep = {entry.file for entry in entries} | {self.index.name}
        for path in self.folder.iterdir():
            if path.name not in keep and not path.name.startswith("."):
                path.unlink(missing_ok=True)
