"""kubecheck, the strict validator the chart tests use, on small manifests of known verdict."""

from __future__ import annotations

from pathlib import Path

import pytest

from borg_harness.kubernetes import KubernetesToolError, find_tool, kubecheck

CONFIG_MAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  CONFIG_seed: "1"
"""


def test_a_missing_tool_names_its_install_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BORG_CACHE_DIR", str(tmp_path))
    with pytest.raises(KubernetesToolError, match=r"run harness/install-helm\.sh"):
        find_tool("helm")


def test_a_valid_object_passes_and_helm_source_comments_are_skipped() -> None:
    result = kubecheck("# Source: borg-dqn/templates/empty.yaml\n---\n" + CONFIG_MAP)
    assert result.passed, result.report
    assert "ok   ConfigMap/settings" in result.report
    assert "1 documents checked" in result.report


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        (CONFIG_MAP.replace("data:", "dataa:"), 'unknown field "dataa"'),
        (CONFIG_MAP + '  CONFIG_seed: "2"\n', "already set in map"),
        (CONFIG_MAP.replace('"1"', "[1]"), "data"),
        (CONFIG_MAP.replace("kind: ConfigMap", "kind: ConfigMapp"), "ConfigMapp"),
        (CONFIG_MAP.replace("  name: settings\n", "  labels: {}\n"), "no metadata.name"),
        ("# only a comment\n", "0 documents checked"),
    ],
    ids=["unknown-field", "duplicate-field", "wrong-type", "unknown-kind", "no-name", "nothing"],
)
def test_what_kubernetes_would_refuse_fails(manifest: str, expected: str) -> None:
    result = kubecheck(manifest)
    assert not result.passed
    assert expected in result.report, result.report
