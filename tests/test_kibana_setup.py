"""kibana/setup.sh, the kibana-setup one-shot: imports with overwrite (never duplicates) and
exits non-zero on any import error. Both setup scripts pass shellcheck.

Kibana cannot run here, so it talks to a stand-in HTTP server that answers as Kibana's
saved-objects import API documents (HTTP 200 with `success` and `errors`): what is tested is
the script's own behaviour, not Kibana's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conftest import DASHBOARD_FILE, REPO_ROOT

SUCCESS = {"success": True, "successCount": 3, "successResults": [], "warnings": []}
FAILURE = {
    "success": False,
    "successCount": 2,
    "errors": [{"id": "borg-dqn", "type": "dashboard", "error": {"type": "missing_references"}}],
    "warnings": [],
}


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class StandIn:
    """Answers per path: (status, JSON body); records every request."""

    answers: dict[str, tuple[int, dict[str, Any]]]
    requests: list[Request] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def kibana() -> Iterator[StandIn]:
    stand_in = StandIn(
        {"/api/saved_objects/_import": (200, SUCCESS), "/api/data_views/default": (200, {"acknowledged": True})}
    )

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            path = self.path.split("?")[0]
            stand_in.requests.append(Request("POST", self.path, dict(self.headers), body))
            status, answer = stand_in.answers.get(path, (404, {"statusCode": 404}))
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    stand_in.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield stand_in
    finally:
        server.shutdown()
        server.server_close()


def run_setup(url: str) -> subprocess.CompletedProcess[str]:
    # No retries: the stand-in's errors are final (compose's retries are for a warming Kibana).
    environment = {**os.environ, "KIBANA_URL": url, "DASHBOARD_FILE": str(DASHBOARD_FILE), "SETUP_RETRIES": "0"}
    return subprocess.run(
        ["bash", str(REPO_ROOT / "kibana" / "setup.sh")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_imports_the_dashboard_file_with_overwrite(kibana: StandIn) -> None:
    result = run_setup(kibana.url)
    assert result.returncode == 0, result.stderr
    importing, default_view = kibana.requests
    assert importing.path == "/api/saved_objects/_import?overwrite=true"
    assert importing.headers.get("kbn-xsrf")
    assert importing.headers["Content-Type"].startswith("multipart/form-data")
    assert DASHBOARD_FILE.read_bytes() in importing.body
    assert b'name="file"' in importing.body
    assert json.loads(default_view.body) == {"data_view_id": "borg-training-log", "force": True}
    assert "imported 3 objects" in result.stdout
    assert "/app/dashboards#/view/borg-dqn" in result.stdout


def test_fails_loudly_when_kibana_reports_errors(kibana: StandIn) -> None:
    kibana.answers["/api/saved_objects/_import"] = (200, FAILURE)
    result = run_setup(kibana.url)
    assert result.returncode != 0
    assert "missing_references" in result.stderr
    assert len(kibana.requests) == 1, "nothing after a failed import"


def test_fails_when_errors_come_with_success(kibana: StandIn) -> None:
    kibana.answers["/api/saved_objects/_import"] = (200, {**SUCCESS, "errors": [{"id": "x", "error": {}}]})
    assert run_setup(kibana.url).returncode != 0


def test_fails_on_an_http_error(kibana: StandIn) -> None:
    kibana.answers["/api/saved_objects/_import"] = (500, {"statusCode": 500, "message": "boom"})
    result = run_setup(kibana.url)
    assert result.returncode != 0
    assert "HTTP 500" in result.stderr


def test_fails_when_the_default_data_view_cannot_be_set(kibana: StandIn) -> None:
    kibana.answers["/api/data_views/default"] = (400, {"statusCode": 400})
    assert run_setup(kibana.url).returncode != 0


def test_setup_scripts_pass_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    scripts = [REPO_ROOT / "kibana" / "setup.sh", REPO_ROOT / "elasticsearch" / "setup.sh"]
    result = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
