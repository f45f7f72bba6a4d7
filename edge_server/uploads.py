"""Reading photos out of requests: a multipart field or a raw image body.

The body as a whole is capped by Flask's ``max_content_length``; each file is read up to
its limit plus one byte, and every photo then goes through the app's ``check_photo``, which
judges the format by content and refuses pixel bombs before decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import request
from werkzeug.datastructures import FileStorage

from core.config import Settings
from core.errors import BadRequest, UnsupportedMediaType

# Room for multipart boundaries, headers and small text fields around the file bytes.
MULTIPART_OVERHEAD = 64 * 1024
# An unread body (a request refused before its body was read: 401, 413, 415...) is read and
# dropped up to this many times the limit before answering, so that the client, maybe still
# sending, gets the answer rather than a reset connection, and a keep-alive connection stays
# usable. Larger bodies are left unread: the server closes that connection.
DRAIN_FACTOR = 4
_DRAIN_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes


def body_limit(settings: Settings, files: int = 1) -> int:
    return settings.max_upload_bytes * files + MULTIPART_OVERHEAD


def _read_limited(stream: FileStorage, settings: Settings) -> bytes:
    # One byte over the limit is enough for check_photo to refuse it with a 413.
    return stream.read(settings.max_upload_bytes + 1)


def _is_multipart() -> bool:
    return request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded")


def one_photo(settings: Settings, field: str = "file") -> Upload:
    """The photo of a request: multipart field ``field``, or the whole body if it is an image."""
    if _is_multipart():
        storage = request.files.get(field)
        if storage is None:
            sent = sorted({*request.files, *request.form}) or ["nothing"]
            raise BadRequest(
                f"The multipart field {field!r} is missing (got: {', '.join(sent)}). "
                f'Send the photo as -F "{field}=@photo.jpg".',
                code="missing_field",
            )
        return Upload(storage.filename or field, _read_limited(storage, settings))
    if request.mimetype.startswith("image/") or request.mimetype == "application/octet-stream":
        data = request.get_data(cache=False)
        return Upload("body", data)
    raise UnsupportedMediaType(
        f"Send the photo as multipart field {field!r} or as a raw body with an image content "
        f"type, not {request.mimetype or 'no content type'!r}."
    )


def many_photos(settings: Settings, field: str = "files") -> list[Upload]:
    """Every file of multipart field ``field`` (at most ``settings.max_batch_files``)."""
    if not _is_multipart():
        raise UnsupportedMediaType(
            f"Send the photos as repeated multipart fields {field!r}, not "
            f"{request.mimetype or 'no content type'!r}."
        )
    storages = request.files.getlist(field)
    if not storages:
        raise BadRequest(
            f'The multipart field {field!r} is missing: send -F "{field}=@a.jpg" '
            f'-F "{field}=@b.jpg".',
            code="missing_field",
        )
    if len(storages) > settings.max_batch_files:
        raise BadRequest(
            f"{len(storages)} files in one request, above the limit of "
            f"{settings.max_batch_files} (setting max_batch_files).",
            code="too_many_files",
        )
    return [
        Upload(storage.filename or f"{field}[{index}]", _read_limited(storage, settings))
        for index, storage in enumerate(storages)
    ]


def discard_unread_body(settings: Settings) -> None:
    """Read and drop what is left of the request body (bounded, see DRAIN_FACTOR)."""
    declared = request.content_length
    if not declared or declared > body_limit(settings) * DRAIN_FACTOR:
        return
    stream = request.environ["wsgi.input"]
    remaining = declared
    while remaining > 0 and (chunk := stream.read(min(_DRAIN_CHUNK, remaining))):
        remaining -= len(chunk)
