"""Run Helm and kubecheck to lint, render and validate the chart without a cluster.

``helm lint`` and ``helm template`` need no cluster. ``harness/install-helm.sh`` builds Helm
from the Go module proxy into ``$BORG_CACHE_DIR/bin/helm``; ``harness/install-kubecheck.sh``
builds ``harness/kubecheck`` (strict decoding into one Kubernetes release's API types) into
``$BORG_CACHE_DIR/bin/kubecheck``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "KubernetesToolError",
    "ValidationReport",
    "find_tool",
    "helm_lint",
    "helm_template",
    "kubecheck",
    "kubernetes_version",
]

INSTALL_SCRIPTS: Final = {"helm": "harness/install-helm.sh", "kubecheck": "harness/install-kubecheck.sh"}


class KubernetesToolError(RuntimeError):
    """Helm or kubecheck is missing, or rejected its input."""


def _cache_root() -> Path:
    env = os.environ.get("BORG_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "borg-dqn"


def find_tool(name: str) -> Path:
    """The pinned build of ``helm`` or ``kubecheck`` in ``$BORG_CACHE_DIR/bin``.

    Raises:
        KubernetesToolError: it is not installed; the message names its install script.
    """
    binary = _cache_root() / "bin" / name
    if not os.access(binary, os.X_OK):
        raise KubernetesToolError(f"{binary} is missing: run {INSTALL_SCRIPTS[name]} (or `make stack-tools`)")
    return binary


def _run(argv: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120, check=False)


def _values_arguments(values_files: Sequence[Path], set_values: Mapping[str, str]) -> list[str]:
    arguments: list[str] = []
    for file in values_files:
        arguments += ["--values", str(file)]
    for key, value in set_values.items():
        arguments += ["--set", f"{key}={value}"]
    return arguments


def helm_lint(chart: Path, values_files: Sequence[Path] = (), set_values: Mapping[str, str] | None = None) -> str:
    """``helm lint --strict`` of the chart; returns its report.

    Raises:
        KubernetesToolError: lint found an error or, being strict, a warning.
    """
    argv = [str(find_tool("helm")), "lint", "--strict", str(chart), *_values_arguments(values_files, set_values or {})]
    proc = _run(argv)
    if proc.returncode != 0:
        raise KubernetesToolError(f"helm lint failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def helm_template(
    chart: Path,
    values_files: Sequence[Path] = (),
    set_values: Mapping[str, str] | None = None,
    release: str = "hive",
) -> str:
    """The manifests ``helm template`` renders (a multi-document YAML text).

    Raises:
        KubernetesToolError: a template failed (message: helm's stderr).
    """
    argv = [str(find_tool("helm")), "template", release, str(chart), *_values_arguments(values_files, set_values or {})]
    proc = _run(argv)
    if proc.returncode != 0:
        raise KubernetesToolError(f"helm template failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


@dataclass(frozen=True)
class ValidationReport:
    """What kubecheck said: whether every document passed, and its report."""

    passed: bool
    report: str


def kubecheck(text: str) -> ValidationReport:
    """Validate manifests strictly against the API types of kubecheck's Kubernetes release."""
    proc = _run([str(find_tool("kubecheck"))], stdin=text)
    if proc.returncode not in (0, 1):
        raise KubernetesToolError(f"kubecheck failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return ValidationReport(passed=proc.returncode == 0, report=proc.stdout + proc.stderr)


def kubernetes_version() -> str:
    """The Kubernetes release kubecheck validates against, e.g. ``"1.35"``."""
    proc = _run([str(find_tool("kubecheck")), "--version"])
    words = proc.stdout.split()
    if proc.returncode != 0 or len(words) < 2:
        raise KubernetesToolError(f"kubecheck --version failed: {proc.stdout}{proc.stderr}")
    return words[1]
