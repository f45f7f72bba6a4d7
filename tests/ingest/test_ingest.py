"""Ingest end to end: the 340 shared photos, bad input, manifests and label conflicts."""

from __future__ import annotations

import hashlib
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from core.app import App
from core.config import Settings
from core.errors import SourceError
from core.ingest import IngestReport, ProgressCallback, read_source
from core.ingest.sources import DEFAULT_PER_LABEL, default_entries
from core.registry import Photo, PhotoStatus
from core.store import ObjectStore
from tests.ingest.conftest import PIXEL_LIMIT
from tests.services import free_port


def run_ingest(
    source: Path | str, settings: Settings, progress: ProgressCallback | None = None
) -> IngestReport:
    with App(settings, actor="test") as app:
        return app.ingest(app.list_source(str(source)), progress=progress)


def registered(settings: Settings) -> list[Photo]:
    with App(settings, actor="test") as app, app.registry.session() as session:
        return list(session.scalars(select(Photo).order_by(Photo.id)))


def store_of(settings: Settings) -> ObjectStore:
    return App(settings, actor="test").store


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_consistent(settings: Settings) -> None:
    """Every row has its object, every object its row, and each object is complete."""
    store = store_of(settings)
    rows = registered(settings)
    keys = list(store.list("raw/"))
    assert sorted(row.object_key for row in rows) == keys
    for row in rows:
        assert hashlib.sha256(store.get(row.object_key)).hexdigest() == row.sha256


@pytest.fixture(
    params=["embedded", pytest.param("servers", marks=pytest.mark.integration)],
)
def any_settings(
    request: pytest.FixtureRequest, make_settings: Callable[..., Settings]
) -> Settings:
    """The embedded stores, and a real PostgreSQL with a real S3 endpoint."""
    if request.param == "embedded":
        return make_settings()
    return make_settings(
        registry_url=request.getfixturevalue("postgres_url"),
        store_url=request.getfixturevalue("s3_store_url"),
    )


def test_the_shared_photos_are_ingested_once(
    any_settings: Settings, dataset_dir: Path, dataset_photos: dict[str, list[Path]]
) -> None:
    progress: list[tuple[int, int]] = []

    report = run_ingest(
        dataset_dir, any_settings, lambda done, total: progress.append((done, total))
    )

    assert (report.added, report.already_present, report.skipped) == (340, 0, [])
    assert progress[0] == (0, 340) and progress[-1] == (340, 340)
    rows = registered(any_settings)
    by_label = {label: [row for row in rows if row.label == label] for label in dataset_photos}
    assert {label: len(found) for label, found in by_label.items()} == {
        "dandelion": 170,
        "grass": 170,
    }
    store = store_of(any_settings)
    for label, paths in dataset_photos.items():
        expected = {sha256_file(path): str(path.resolve()) for path in paths}
        for row in by_label[label]:
            assert row.object_key == f"raw/{label}/{row.sha256}.jpg"
            assert row.url_source == expected[row.sha256]
            assert row.url_s3 == store.url_for(row.object_key)
            assert row.status is PhotoStatus.TRAINED
            assert (row.image_format, row.size_bytes) == ("JPEG", store.size(row.object_key))
    assert_consistent(any_settings)

    again = run_ingest(dataset_dir, any_settings)

    assert (again.added, again.already_present, again.skipped) == (0, 340, [])
    assert len(registered(any_settings)) == 340
    assert len(list(store.list())) == 340


def test_each_bad_file_is_skipped_with_its_reason(
    bad_source: Path, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(max_image_pixels=PIXEL_LIMIT)

    report = run_ingest(bad_source, settings)

    reasons = {
        Path(item.source).relative_to(bad_source).as_posix(): item for item in report.skipped
    }
    assert {name: item.reason for name, item in reasons.items()} == {
        "grass/truncated.jpg": "corrupt",
        "grass/notes.jpg": "unsupported_type",
        "grass/empty.jpg": "empty",
        "grass/huge.png": "too_large",
        "roses/rose.jpg": "unknown_label",
    }
    assert "max_image_pixels" in reasons["grass/huge.png"].message
    assert "dandelion, grass" in reasons["roses/rose.jpg"].message
    assert (report.added, report.already_present) == (2, 0)
    assert report.skipped_by_reason() == {
        "corrupt": 1,
        "empty": 1,
        "too_large": 1,
        "unknown_label": 1,
        "unsupported_type": 1,
    }
    assert sorted(row.url_source for row in registered(settings)) == [
        str(bad_source / "dandelion" / "good.jpg"),
        str(bad_source / "grass" / "good.jpg"),
    ]
    assert_consistent(settings)


def test_a_photo_outside_any_label_folder_is_reported(
    tmp_path: Path, settings: Settings, dataset_photos: dict[str, list[Path]]
) -> None:
    source = tmp_path / "source"
    (source / "grass").mkdir(parents=True)
    shutil.copy(dataset_photos["grass"][0], source / "grass" / "a.jpg")
    shutil.copy(dataset_photos["grass"][1], source / "loose.jpg")
    (source / "README.md").write_text("documentation, not a photo")

    report = run_ingest(source, settings)

    assert report.added == 1
    assert [(Path(item.source).name, item.reason) for item in report.skipped] == [
        ("loose.jpg", "unknown_label")
    ]


def test_the_same_photo_under_another_label_is_not_relabelled(
    tmp_path: Path, settings: Settings, dataset_photos: dict[str, list[Path]]
) -> None:
    photo = dataset_photos["grass"][0]
    first, second = tmp_path / "first" / "grass", tmp_path / "second" / "dandelion"
    for folder in (first, second):
        folder.mkdir(parents=True)
        shutil.copy(photo, folder / "a.jpg")
    shutil.copy(photo, first / "same-bytes-again.jpg")

    once = run_ingest(first.parent, settings)
    conflict = run_ingest(second.parent, settings)

    assert (once.added, once.already_present) == (1, 1)
    assert (conflict.added, conflict.already_present) == (0, 0)
    assert [item.reason for item in conflict.skipped] == ["label_conflict"]
    assert "already registered as grass" in conflict.skipped[0].message
    assert [row.label for row in registered(settings)] == ["grass"]


def test_a_manifest_of_paths_and_urls(
    tmp_path: Path,
    settings: Settings,
    dataset_photos: dict[str, list[Path]],
    http_photos: str,
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: fails at once
    (tmp_path / "photos").mkdir()
    shutil.copy(dataset_photos["grass"][7], tmp_path / "photos" / "relative.jpg")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "url,label\n"
        "photos/relative.jpg,grass\n"
        f"{dataset_photos['dandelion'][7]},dandelion\n"
        f"{http_photos}/dandelion.jpg,dandelion\n"
        f"{http_photos}/grass.jpg,grass\n"
        f"{http_photos}/absent.jpg,grass\n"
        f"{closed}/one.jpg,grass\n"
        f"{closed}/two.jpg,dandelion\n"
        "photos/missing.jpg,grass\n"
        f"{http_photos}/grass.jpg,roses\n"
        "only-one-column\n"
        "\n"
    )

    report = run_ingest(manifest, settings)

    assert report.added == 4
    assert sorted((item.source, item.reason) for item in report.skipped) == sorted(
        [
            (f"{http_photos}/absent.jpg", "http_error"),
            (f"{closed}/one.jpg", "unreachable"),
            (f"{closed}/two.jpg", "unreachable"),
            (str(tmp_path / "photos" / "missing.jpg"), "missing"),
            (f"{http_photos}/grass.jpg", "unknown_label"),
            (f"{manifest}:11", "bad_row"),
        ]
    )
    sources = {row.url_source: row.label for row in registered(settings)}
    assert sources == {
        str(tmp_path / "photos" / "relative.jpg"): "grass",
        str(dataset_photos["dandelion"][7]): "dandelion",
        f"{http_photos}/dandelion.jpg": "dandelion",
        f"{http_photos}/grass.jpg": "grass",
    }
    assert_consistent(settings)


def test_a_missing_or_unusable_source_is_an_error(tmp_path: Path, settings: Settings) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        run_ingest(tmp_path / "absent", settings)
    not_a_source = tmp_path / "photo.jpg"
    not_a_source.write_bytes(b"x")
    with pytest.raises(SourceError, match="sub-folder per label"):
        run_ingest(not_a_source, settings)


def test_the_default_source_is_the_specification_dataset(settings: Settings) -> None:
    entries = list(default_entries())

    assert len(entries) == 2 * DEFAULT_PER_LABEL == 400
    assert read_source("default", settings) == (entries, [])
    base = "https://raw.githubusercontent.com/btphan95/greenr-airflow/master/data"
    assert entries[0].location == f"{base}/dandelion/00000000.jpg"
    assert entries[199].location == f"{base}/dandelion/00000199.jpg"
    assert (entries[200].location, entries[200].label) == (f"{base}/grass/00000000.jpg", "grass")
    assert entries[-1].location == f"{base}/grass/00000199.jpg"


def test_downloads_are_bounded_in_size_and_time(
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    dataset_photos: dict[str, list[Path]],
    http_photos: str,
) -> None:
    settings = make_settings(max_upload_bytes=5_000, download_timeout_s=0.5)
    small = min(dataset_photos["grass"], key=lambda path: path.stat().st_size)
    assert small.stat().st_size > 5_000  # every shared photo is above this test's cap
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        manifest = tmp_path / "manifest.csv"
        manifest.write_text(
            f"{http_photos}/grass.jpg,grass\n"
            f"{small},grass\n"
            f"http://127.0.0.1:{silent.getsockname()[1]}/slow.jpg,grass\n"
        )

        report = run_ingest(manifest, settings)

    assert report.added == 0
    assert [item.reason for item in report.skipped] == ["too_large", "too_large", "unreachable"]
    assert "max_upload_bytes" in report.skipped[0].message
    assert "download_timeout_s" in report.skipped[2].message
    assert registered(settings) == []
    assert list(store_of(settings).list()) == []
