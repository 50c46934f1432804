"""kibana/setup.sh, the kibana-setup one-shot: imports with overwrite (never duplicates) and
exits non-zero on any import error. Both setup scripts pass shellcheck.

Kibana cannot run here, so it talks to a stand-in HTTP server that answers as Kibana's
saved-objects import API documents (HTTP 200 with `success` and `errors`): what is tested is
the script's own behaviour, not Kibana's: that includes logging in with the credentials
compose gives it (Kibana checks them against Elasticsearch, which is not tested here).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import DASHBOARD_FILE, REPO_ROOT, service_environment
from http_stand_in import StandIn, stand_in

SUCCESS = {"success": True, "successCount": 3, "successResults": [], "warnings": []}
FAILURE = {
    "success": False,
    "successCount": 2,
    "errors": [{"id": "borg-dqn", "type": "dashboard", "error": {"type": "missing_references"}}],
    "warnings": [],
}


@pytest.fixture
def kibana() -> Iterator[StandIn]:
    answers = {"/api/saved_objects/_import": (200, SUCCESS), "/api/data_views/default": (200, {"acknowledged": True})}
    with stand_in(answers) as server:
        server.default = (404, {"statusCode": 404})
        yield server


def run_setup(url: str, **extra: str) -> subprocess.CompletedProcess[str]:
    # No retries: the stand-in's errors are final (compose's retries are for a warming Kibana).
    environment = {
        **{key: value for key, value in os.environ.items() if not key.startswith("ELASTIC_")},
        "KIBANA_URL": url,
        "DASHBOARD_FILE": str(DASHBOARD_FILE),
        "SETUP_RETRIES": "0",
        **extra,
    }
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
    assert importing.basic_credentials() is None, "no password: no login"


def test_logs_in_with_the_credentials_compose_gives_it(kibana: StandIn, compose_model: dict[str, Any]) -> None:
    environment = service_environment(compose_model, "kibana-setup")
    credentials = {key: environment[key] for key in ("ELASTIC_USER", "ELASTIC_PASSWORD")}
    result = run_setup(kibana.url, **credentials)
    assert result.returncode == 0, result.stderr
    expected = (credentials["ELASTIC_USER"], credentials["ELASTIC_PASSWORD"])
    assert [request.basic_credentials() for request in kibana.requests] == [expected, expected]
    assert credentials["ELASTIC_PASSWORD"] not in result.stdout + result.stderr


def test_a_password_with_quotes_and_backslashes_reaches_kibana_intact(kibana: StandIn) -> None:
    password = 'a"b\\c d'
    assert run_setup(kibana.url, ELASTIC_PASSWORD=password).returncode == 0
    assert kibana.requests[0].basic_credentials() == ("elastic", password)


def test_a_refused_login_is_named(kibana: StandIn) -> None:
    kibana.answers["/api/saved_objects/_import"] = (401, {"statusCode": 401, "message": "Unauthorized"})
    result = run_setup(kibana.url, ELASTIC_PASSWORD="wrong-password")
    assert result.returncode != 0
    assert "refused the login of user elastic" in result.stderr
    assert "wrong-password" not in result.stderr


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
