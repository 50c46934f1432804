"""A few lines of HTTP for talking JSON to Elasticsearch (standard library only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from borg_harness.search_server import basic_authorization


class SearchRequestError(RuntimeError):
    """Elasticsearch answered with an HTTP error; the message has its body."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def es_request(base_url: str, method: str, path: str, body: Any = None, auth: tuple[str, str] | None = None) -> Any:
    """One request, as the user `auth` (user, password) when given; a list body is sent as
    NDJSON (the _bulk API)."""
    if isinstance(body, list):
        data: bytes | None = "".join(json.dumps(line) + "\n" for line in body).encode()
        content_type = "application/x-ndjson"
    else:
        data = None if body is None else json.dumps(body).encode()
        content_type = "application/json"
    headers = {"Content-Type": content_type}
    if auth is not None:
        headers["Authorization"] = basic_authorization(*auth)
    request = urllib.request.Request(base_url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        raise SearchRequestError(
            f"{method} {path}: HTTP {error.code}: {error.read().decode(errors='replace')}", error.code
        ) from None
