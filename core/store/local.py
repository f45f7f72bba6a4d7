"""The embedded object store: a folder laid out like the bucket."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from core.errors import InvalidKey, NotFound, StoreError, StoreUnavailable
from core.store.base import ObjectStore, check_key, check_prefix

TEMP_PREFIX = ".tmp-"  # unfinished writes: invisible to readers, swept by `classifi doctor`


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``path`` so that readers see the old file or the whole new one, even after a
    crash: a synced temp file in the same folder, then a rename."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX, suffix=".part")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class LocalStore(ObjectStore):
    """Objects are files under ``root``; writes go through a temp file and ``os.replace``."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"Cannot create the local store at {self.root}: {exc}") from exc

    @property
    def url(self) -> str:
        return self.root.as_uri()

    def _path(self, key: str) -> Path:
        if key.rsplit("/", 1)[-1].startswith(TEMP_PREFIX):
            raise InvalidKey(
                f"Object key {key!r} names an unfinished write ({TEMP_PREFIX}*): not an object."
            )
        return self.root / check_key(key)

    def url_for(self, key: str) -> str:
        return self._path(key).as_uri()

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, data)
        except OSError as exc:
            raise StoreError(f"Cannot write {key!r} to {self.root}: {exc}") from exc

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"Object {key!r} does not exist in {self.url}.") from None
        except OSError as exc:
            raise StoreError(f"Cannot read {key!r} from {self.root}: {exc}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"Object {key!r} does not exist in {self.url}.") from None

    def list(self, prefix: str = "") -> Iterator[str]:
        check_prefix(prefix)
        # Walk only the deepest folder the prefix names; filter the rest by string.
        search_root = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        keys = []
        for dirpath, _dirnames, filenames in os.walk(search_root):
            for name in filenames:
                if name.startswith(TEMP_PREFIX):
                    continue  # an unfinished write, invisible to readers
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        yield from sorted(keys)

    def copy(self, source: str, destination: str) -> None:
        self.put(destination, self.get(source))

    def move(self, source: str, destination: str) -> None:
        src, dst = self._path(source), self._path(destination)
        if src == dst:
            return
        if not src.is_file():
            if dst.is_file():
                return  # already moved by an earlier, interrupted run
            raise NotFound(f"Cannot move {source!r}: it does not exist in {self.url}.")
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
        except OSError as exc:
            raise StoreError(f"Cannot move {source!r} to {destination!r}: {exc}") from exc

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"Cannot delete {key!r} from {self.root}: {exc}") from exc

    def free_bytes(self) -> int | None:
        folder = self.root if self.root.exists() else self.root.parent
        return shutil.disk_usage(folder).free

    def ping(self) -> None:
        if not self.root.is_dir() or not os.access(self.root, os.W_OK):
            raise StoreUnavailable(f"The local store {self.root} is missing or not writable.")
