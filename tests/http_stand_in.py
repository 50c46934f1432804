"""A stand-in HTTP server for the setup scripts' tests: answers JSON per path and records every
request, so a test can see exactly what a script sent (paths, bodies, credentials)."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class RecordedRequest:
    """One request as the stand-in received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def route(self) -> str:
        """The path without its query."""
        return self.path.split("?")[0]

    def json(self) -> Any:
        """The body, parsed as JSON."""
        return json.loads(self.body)

    def basic_credentials(self) -> tuple[str, str] | None:
        """(user, password) of its basic-auth Authorization header, or None."""
        header = self.headers.get("Authorization")
        if header is None:
            return None
        assert header.startswith("Basic "), header
        user, _, password = base64.b64decode(header.removeprefix("Basic ")).decode().partition(":")
        return user, password


@dataclass
class StandIn:
    """Answers per path (status, JSON body), `default` for any other; records every request."""

    answers: dict[str, tuple[int, Any]] = field(default_factory=dict)
    default: tuple[int, Any] = (200, {"acknowledged": True})
    requests: list[RecordedRequest] = field(default_factory=list)
    url: str = ""


@contextmanager
def stand_in(answers: dict[str, tuple[int, Any]] | None = None) -> Iterator[StandIn]:
    """A StandIn listening on 127.0.0.1 while the block runs."""
    state = StandIn(dict(answers or {}))

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            request = RecordedRequest(self.command, self.path, dict(self.headers), body)
            state.requests.append(request)
            status, answer = state.answers.get(request.route, state.default)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _answer  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
