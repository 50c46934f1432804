"""Run a real Docker Compose implementation to validate and render compose files.

``docker compose config`` needs no engine: it loads, interpolates, validates and
normalises the model. These machines have the ``docker`` CLI but neither an engine nor
(necessarily) the compose plugin, so ``harness/install-compose.sh`` builds Compose v5
from the Go module proxy into ``$BORG_CACHE_DIR/bin/docker-compose``.
:func:`find_compose` prefers that pinned build, then a compose v2+ plugin or binary.
Compose v1 (Debian's ``docker-compose`` package) is refused: it rejects the current
Compose Specification and cannot print JSON.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

__all__ = [
    "ComposeError",
    "ComposeNotFoundError",
    "compose_config",
    "compose_version",
    "find_compose",
]

log = logging.getLogger(__name__)

INSTALL_SCRIPT: Final = "harness/install-compose.sh"
_MIN_MAJOR: Final = 2


class ComposeError(RuntimeError):
    """Compose ran and rejected the input (or could not run)."""


class ComposeNotFoundError(ComposeError):
    """No usable compose implementation is installed."""


def _cache_root() -> Path:
    env = os.environ.get("BORG_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "borg-dqn"


def compose_version(argv: Sequence[str]) -> str | None:
    """``<argv> version --short`` (e.g. ``"5.5.1"``), or None if it does not run."""
    try:
        proc = subprocess.run(
            [*argv, "version", "--short"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = proc.stdout.strip()
    return out.removeprefix("v") if proc.returncode == 0 and out else None


def _usable(argv: list[str]) -> bool:
    version = compose_version(argv)
    if version is None:
        return False
    m = re.match(r"(\d+)\.", version)
    if m is None or int(m.group(1)) < _MIN_MAJOR:
        log.info("ignoring %s: compose %s is older than v%d", argv, version, _MIN_MAJOR)
        return False
    return True


def find_compose() -> list[str]:
    """The argv prefix that runs Docker Compose v2+.

    Order: ``$BORG_COMPOSE`` (a command line, e.g. ``"docker compose"``), the pinned
    build in ``$BORG_CACHE_DIR/bin/docker-compose``, the ``docker compose`` plugin, a
    ``docker-compose`` on ``PATH``.

    Raises:
        ComposeNotFoundError: none works; the message names the install script.
    """
    if forced := os.environ.get("BORG_COMPOSE"):
        argv = shlex.split(forced)
        if not _usable(argv):
            raise ComposeNotFoundError(f"BORG_COMPOSE={forced!r} is not Compose v2+")
        return argv
    candidates: list[list[str]] = []
    cached = _cache_root() / "bin" / "docker-compose"
    if os.access(cached, os.X_OK):
        candidates.append([str(cached)])
    if docker := shutil.which("docker"):
        candidates.append([docker, "compose"])
    if binary := shutil.which("docker-compose"):
        candidates.append([binary])
    for argv in candidates:
        if _usable(argv):
            return argv
    raise ComposeNotFoundError(
        "no Docker Compose v2+ found (tried "
        + (", ".join(" ".join(c) for c in candidates) or "nothing")
        + f"); run {INSTALL_SCRIPT} (builds it into {cached}) or set BORG_COMPOSE"
    )


def compose_config(
    project_dir: Path,
    env_file: Path,
    files: list[Path],
    *,
    profiles: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Render the interpolated, validated, normalised model as compose sees it.

    Runs ``<compose> --project-directory DIR --env-file ENV -f F... config --format
    json``. Interpolation sees ONLY ``env_file`` plus ``environ``: the caller's
    environment is not passed (apart from PATH and HOME), so a variable exported in a
    developer's shell cannot hide a missing key in the env file. ``profiles``
    activates services behind ``profiles:`` (otherwise they are left out).

    Raises:
        ComposeError: compose rejected the files (message: compose's stderr).
        ComposeNotFoundError: see :func:`find_compose`.
    """
    argv = [
        *find_compose(),
        "--project-directory",
        str(project_dir),
        "--env-file",
        str(env_file),
    ]
    for file in files:
        argv += ["-f", str(file)]
    for profile in profiles:
        argv += ["--profile", profile]
    argv += ["config", "--format", "json"]
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME")}
    env.update(environ or {})
    log.debug("running %s", shlex.join(argv))
    proc = subprocess.run(
        argv,
        cwd=project_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise ComposeError(f"compose config failed (exit {proc.returncode}): {proc.stderr.strip()}")
    model: Any = json.loads(proc.stdout)
    if not isinstance(model, dict):
        raise ComposeError(f"compose config printed {type(model).__name__}, not a map")
    return model
