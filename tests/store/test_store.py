"""One contract, every adapter: LocalStore and MinioStore on a real S3 HTTP server."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from core.config import Settings
from core.errors import InvalidKey, NotFound, StoreUnavailable
from core.store import ObjectStore, label_prefix, open_store, photo_key
from tests.conftest import REPO_ROOT
from tests.services import free_port

BAD_KEYS = [
    "../escape.jpg",
    "raw/../../escape.jpg",
    "/etc/passwd",
    "raw\\grass\\a.jpg",
    "raw//a",
    "",
]


@pytest.fixture
def store(store_url: str, make_settings: Callable[..., Settings]) -> ObjectStore:
    return open_store(make_settings(store_url=store_url))


class TestObjectStore:
    def test_put_then_get_exists_and_size(self, store: ObjectStore) -> None:
        store.put("raw/grass/a.jpg", b"photo bytes", "image/jpeg")

        assert store.get("raw/grass/a.jpg") == b"photo bytes"
        assert store.exists("raw/grass/a.jpg")
        assert store.size("raw/grass/a.jpg") == len(b"photo bytes")
        assert not store.exists("raw/grass/b.jpg")

    def test_put_replaces_the_whole_object(self, store: ObjectStore) -> None:
        store.put("model/2026-01-01/head.pth", b"old and longer")
        store.put("model/2026-01-01/head.pth", b"new")

        assert store.get("model/2026-01-01/head.pth") == b"new"
        # No temporary name of the write is ever visible to readers.
        assert list(store.list()) == ["model/2026-01-01/head.pth"]

    def test_missing_objects_raise_not_found(self, store: ObjectStore) -> None:
        with pytest.raises(NotFound):
            store.get("raw/grass/missing.jpg")
        with pytest.raises(NotFound):
            store.size("raw/grass/missing.jpg")
        with pytest.raises(NotFound):
            store.copy("raw/grass/missing.jpg", "raw/dandelion/missing.jpg")
        with pytest.raises(NotFound):
            store.move("raw/grass/missing.jpg", "raw/dandelion/missing.jpg")

    def test_list_is_sorted_recursive_and_a_plain_key_prefix(self, store: ObjectStore) -> None:
        keys = [
            "raw/grass2/z.jpg",
            "raw/grass/b.jpg",
            "raw/grass/sub/c.jpg",
            "raw/grass/a.jpg",
            "raw/dandelion/a.jpg",
        ]
        for key in keys:
            store.put(key, key.encode())

        assert list(store.list("raw/grass/")) == [
            "raw/grass/a.jpg",
            "raw/grass/b.jpg",
            "raw/grass/sub/c.jpg",
        ]
        # Without the slash the prefix is a string prefix, as in S3: the sibling matches too.
        assert list(store.list("raw/grass")) == [
            "raw/grass/a.jpg",
            "raw/grass/b.jpg",
            "raw/grass/sub/c.jpg",
            "raw/grass2/z.jpg",
        ]
        assert list(store.list()) == sorted(keys)
        assert list(store.list("raw/absent/")) == []

    def test_copy_keeps_the_source(self, store: ObjectStore) -> None:
        store.put("raw/new_data/pending_validation/a.jpg", b"a")
        store.copy("raw/new_data/pending_validation/a.jpg", "raw/new_data/corrected_data/a.jpg")

        assert store.get("raw/new_data/corrected_data/a.jpg") == b"a"
        assert store.exists("raw/new_data/pending_validation/a.jpg")

    def test_move_and_repeating_a_finished_move(self, store: ObjectStore) -> None:
        source, destination = "raw/new_data/corrected_data/a.jpg", "raw/grass/a.jpg"
        store.put(source, b"a")

        store.move(source, destination)
        # A process that died after the move re-runs it: nothing to do, no error.
        store.move(source, destination)

        assert not store.exists(source)
        assert store.get(destination) == b"a"
        assert list(store.list()) == [destination]

    def test_deleting_an_absent_key_is_not_an_error(self, store: ObjectStore) -> None:
        store.put("raw/grass/a.jpg", b"a")
        store.delete("raw/grass/a.jpg")
        store.delete("raw/grass/a.jpg")

        assert not store.exists("raw/grass/a.jpg")
        assert list(store.list()) == []

    @pytest.mark.parametrize("key", BAD_KEYS)
    def test_keys_outside_the_bucket_are_rejected(self, store: ObjectStore, key: str) -> None:
        store.put("raw/grass/a.jpg", b"a")
        for operation in (
            lambda: store.put(key, b"x"),
            lambda: store.get(key),
            lambda: store.exists(key),
            lambda: store.copy("raw/grass/a.jpg", key),
            lambda: store.move("raw/grass/a.jpg", key),
            lambda: store.delete(key),
        ):
            with pytest.raises(InvalidKey):
                operation()
        assert list(store.list()) == ["raw/grass/a.jpg"]

    def test_photo_keys_are_content_derived(self, store: ObjectStore) -> None:
        key = photo_key(label_prefix("grass"), "ab" * 32, ".jpg")
        store.put(key, b"x")

        assert key == f"raw/grass/{'ab' * 32}.jpg"
        assert store.url_for(key).endswith(f"/{key}")
        assert store.url_for(key) != store.url_for("raw/grass/other.jpg")

    def test_ping_answers(self, store: ObjectStore) -> None:
        store.ping()


# A writer killed between writing its temp file and renaming it into place.
KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from core.store import LocalStore

os.replace = lambda *_: os.kill(os.getpid(), signal.SIGKILL)
LocalStore(Path(sys.argv[1])).put("raw/grass/b.jpg", b"half")
"""


def test_local_store_hides_an_interrupted_write(tmp_path: Path) -> None:
    """The temp file a killed writer leaves is never listed or read as an object."""
    from core.store import LocalStore

    store = LocalStore(tmp_path / "bucket")
    store.put("raw/grass/a.jpg", b"a")
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(tmp_path / "bucket")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (left,) = {path.name for path in (tmp_path / "bucket" / "raw" / "grass").iterdir()} - {"a.jpg"}
    assert (tmp_path / "bucket" / "raw" / "grass" / left).read_bytes() == b"half"

    assert list(store.list()) == ["raw/grass/a.jpg"]
    for read in (store.exists, store.get):
        with pytest.raises(InvalidKey, match="unfinished write"):
            read(f"raw/grass/{left}")


@pytest.mark.timeout(60)
def test_s3_store_whose_endpoint_is_down_is_unavailable(
    make_settings: Callable[..., Settings],
) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = make_settings(store_url=f"s3://image-dandelion-grass?endpoint={endpoint}")

    with pytest.raises(StoreUnavailable) as raised:
        open_store(settings)

    assert endpoint in str(raised.value)
    assert "CLASSIFI_STORE_URL" in str(raised.value)


def test_s3_store_url_keeps_credentials_out(
    s3_endpoint: str, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(store_url=f"s3://classifi-url-test?endpoint={s3_endpoint}")
    store = open_store(settings)

    assert store.url == f"s3://classifi-url-test?endpoint={s3_endpoint}"
    assert store.url_for("raw/grass/a.jpg") == "s3://classifi-url-test/raw/grass/a.jpg"
    assert settings.s3_secret_key is not None
    assert settings.s3_secret_key.get_secret_value() not in store.url
