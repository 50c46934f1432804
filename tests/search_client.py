"""A few lines of HTTP for talking JSON to Elasticsearch (standard library only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class SearchRequestError(RuntimeError):
    """Elasticsearch answered with an HTTP error; the message has its body."""


def es_request(base_url: str, method: str, path: str, body: Any = None) -> Any:
    """One request; a list body is sent as NDJSON (the _bulk API)."""
    if isinstance(body, list):
        data: bytes | None = "".join(json.dumps(line) + "\n" for line in body).encode()
        content_type = "application/x-ndjson"
    else:
        data = None if body is None else json.dumps(body).encode()
        content_type = "application/json"
    request = urllib.request.Request(base_url + path, data=data, method=method, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        raise SearchRequestError(
            f"{method} {path}: HTTP {error.code}: {error.read().decode(errors='replace')}"
        ) from None
