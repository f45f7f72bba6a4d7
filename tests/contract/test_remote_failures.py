"""What :class:`~core.app.remote.RemoteApp` raises when no edge server answers as one: nothing
listening, or a server (a proxy, another program) answering outside the error shape. Real
HTTP servers on 127.0.0.1 stand in for them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.app.remote import RemoteApp
from core.errors import AuthError, NotFound, ServerError, ServerUnreachable
from tests.services import free_port

Answer = tuple[int, str, bytes]  # status, content type, body


@pytest.fixture
def server() -> Iterator[Callable[[Answer], str]]:
    """Start an HTTP server that gives one fixed answer to every request; its URL."""
    started: list[ThreadingHTTPServer] = []

    def start(answer: Answer) -> str:
        status, content_type, body = answer

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, *_args: object) -> None:
                pass

        http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=http.serve_forever, daemon=True).start()
        started.append(http)
        return f"http://127.0.0.1:{http.server_port}"

    yield start
    for http in started:
        http.shutdown()
        http.server_close()


def test_nothing_listening_is_unreachable() -> None:
    remote = RemoteApp(f"http://127.0.0.1:{free_port()}", timeout=5)
    with pytest.raises(ServerUnreachable, match="does not answer"):
        remote.champion()


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ((502, "text/html", b"<h1>Bad gateway</h1>"), ServerError),
        ((500, "application/json", b'{"detail": "boom"}'), ServerError),
        ((404, "text/plain", b"no such page"), NotFound),
        ((200, "text/html", b"<html>a login page</html>"), ServerError),
    ],
)
def test_an_answer_outside_the_error_shape(server, answer: Answer, error: type) -> None:
    with pytest.raises(error) as raised:
        RemoteApp(server(answer)).versions()
    assert type(raised.value) is error
    assert "edge server" in str(raised.value)


def test_the_error_shape_gives_the_servers_class(server) -> None:
    body = b'{"error": {"code": "auth_error", "message": "The admin token is wrong."}}'
    with pytest.raises(AuthError, match="The admin token is wrong"):
        RemoteApp(server((401, "application/json", body))).pending()
