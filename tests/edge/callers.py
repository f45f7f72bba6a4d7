"""One way to call the server in tests, over the Flask test client or real HTTP."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests
from flask.testing import FlaskClient


@dataclass
class Call:
    """A request: multipart ``files`` (field, name, bytes), ``form`` fields, or a raw body."""

    method: str
    path: str
    files: list[tuple[str, str, bytes]] = field(default_factory=list)
    form: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    content_type: str | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Answer:
    status: int
    json: Any
    content_type: str
    content: bytes


class Caller(Protocol):
    def __call__(self, call: Call) -> Answer: ...


class TestClientCaller:
    __test__ = False  # not a test class

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def __call__(self, call: Call) -> Answer:
        kwargs: dict[str, Any] = {"headers": call.headers}
        if call.files or call.form:
            data: dict[str, Any] = dict(call.form)
            for name, filename, content in call.files:
                data.setdefault(name, []).append((io.BytesIO(content), filename))
            kwargs["data"] = data
            kwargs["content_type"] = "multipart/form-data"
        elif call.json is not None:
            kwargs["json"] = call.json
        elif call.body is not None:
            kwargs["data"] = call.body
            if call.content_type:
                kwargs["content_type"] = call.content_type
        response = self.client.open(call.path, method=call.method, **kwargs)
        return Answer(
            response.status_code,
            response.get_json(silent=True),
            response.content_type or "",
            response.get_data(),
        )


class HttpCaller:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()

    def __call__(self, call: Call) -> Answer:
        kwargs: dict[str, Any] = {"headers": dict(call.headers), "timeout": 60}
        if call.files or call.form:
            kwargs["files"] = [(name, (fn, content)) for name, fn, content in call.files]
            kwargs["data"] = call.form
        elif call.json is not None:
            kwargs["json"] = call.json
        elif call.body is not None:
            kwargs["data"] = call.body
            if call.content_type:
                kwargs["headers"]["Content-Type"] = call.content_type
        response = self.session.request(call.method, self.base_url + call.path, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = None
        return Answer(
            response.status_code,
            body,
            response.headers.get("Content-Type", ""),
            response.content,
        )
