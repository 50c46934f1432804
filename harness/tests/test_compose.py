"""The real compose implementation renders, interpolates and rejects as expected."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from borg_harness.compose import ComposeError, compose_config, compose_version, find_compose

TINY = """\
name: tiny
services:
  cache:
    image: "redis:${REDIS_TAG:?REDIS_TAG must be set in the env file}"
    healthcheck:
      test: ["CMD", "redis-cli", "ping"]
      interval: 5s
      retries: 5
    volumes:
      - cache-data:/data
  worker:
    image: "busybox:1.37"
    depends_on:
      cache:
        condition: service_healthy
    deploy:
      resources:
        reservations:
          devices:
            - driver: nvidia
              count: all
              capabilities: [gpu]
volumes:
  cache-data: {}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "compose.yaml").write_text(TINY)
    return tmp_path


def test_find_compose_is_v2_or_newer() -> None:
    argv = find_compose()
    version = compose_version(argv)
    assert version is not None
    assert int(re.match(r"\d+", version).group()) >= 2  # type: ignore[union-attr]


def test_config_renders_interpolated_model(project: Path) -> None:
    env = project / "test.env"
    env.write_text("REDIS_TAG=7.4.1\n")
    model = compose_config(project, env, [project / "compose.yaml"])

    assert model["name"] == "tiny"
    cache = model["services"]["cache"]
    assert cache["image"] == "redis:7.4.1"
    assert cache["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert cache["healthcheck"]["interval"] == "5s"
    (volume,) = cache["volumes"]
    assert (volume["type"], volume["source"], volume["target"]) == (
        "volume",
        "cache-data",
        "/data",
    )
    assert model["volumes"]["cache-data"]["name"] == "tiny_cache-data"

    worker = model["services"]["worker"]
    assert worker["depends_on"]["cache"]["condition"] == "service_healthy"
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"]
    assert device["driver"] == "nvidia"
    assert device["count"] in (-1, "all")  # compose v2+ normalises "all" to -1


def test_missing_required_variable_fails(project: Path) -> None:
    env = project / "empty.env"
    env.write_text("")
    with pytest.raises(ComposeError, match="REDIS_TAG must be set in the env file"):
        compose_config(project, env, [project / "compose.yaml"])


def test_caller_environment_does_not_leak(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A value exported in the developer's shell must not paper over a missing key.
    monkeypatch.setenv("REDIS_TAG", "from-the-shell")
    env = project / "empty.env"
    env.write_text("")
    with pytest.raises(ComposeError, match="REDIS_TAG"):
        compose_config(project, env, [project / "compose.yaml"])


def test_invalid_model_is_rejected(project: Path) -> None:
    (project / "bad.yaml").write_text("services:\n  x:\n    image: a\n    bogus_key: 1\n")
    env = project / "test.env"
    env.write_text("")
    with pytest.raises(ComposeError, match="bogus_key"):
        compose_config(project, env, [project / "bad.yaml"])
