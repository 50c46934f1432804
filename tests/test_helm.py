"""The Helm chart (deploy/helm/borg-dqn), without a cluster: `helm lint`, `helm template` with
the default and the CPU values, every manifest decoded strictly into the API types of one
Kubernetes release (harness/kubecheck), and what the manifests wire: the agents, their GPUs,
settings and logins, Redis as compose runs it, exposure and NetworkPolicies."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from borg_game.settings import check_unknown_keys
from borg_harness.kubernetes import KubernetesToolError, helm_lint, helm_template, kubecheck, kubernetes_version

from conftest import REPO_ROOT, env_example_values, service_environment

CHART = REPO_ROOT / "deploy" / "helm" / "borg-dqn"
CPU_VALUES = CHART / "values-cpu.yaml"
# The release Kubernetes version the manifests are validated against (harness/kubecheck/go.mod).
KUBERNETES_VERSION = "1.35"
RELEASE = "hive"
PREFIX = f"{RELEASE}-borg-dqn"
GPU = "nvidia.com/gpu"
# Services with a compose healthcheck -> the chart's workload of the same server.
PROBED = {
    "redis": ("StatefulSet", f"{PREFIX}-redis"),
    "kafka": ("StatefulSet", f"{PREFIX}-kafka"),
    "elasticsearch": ("StatefulSet", f"{PREFIX}-elasticsearch"),
    "logstash": ("Deployment", f"{PREFIX}-logstash"),
    "kibana": ("Deployment", f"{PREFIX}-kibana"),
}
WORKLOADS = {"StatefulSet", "Deployment", "Job"}
# Secret key -> the workloads (by component) that may hold it.
SECRET_HOLDERS = {
    "redis-password": {"redis", "redis-replica", "game"},
    "redis-monitor-password": {"redis", "redis-replica", "monitor"},
    "elastic-password": {"elasticsearch", "elasticsearch-setup", "kibana-setup"},
    "kibana-password": {"elasticsearch-setup", "kibana"},
    "logstash-password": {"elasticsearch-setup", "logstash"},
    "kibana-encryption-key": {"kibana"},
}


Manifests = list[dict[str, Any]]


def render(*values_files: Path, **set_values: str) -> Manifests:
    """The chart's objects as `helm template` renders them (release `hive`)."""
    text = helm_template(CHART, values_files, set_values, release=RELEASE)
    return [document for document in yaml.safe_load_all(text) if document]


@pytest.fixture(scope="module")
def default_manifests() -> Manifests:
    return render()


@pytest.fixture(scope="module")
def cpu_manifests() -> Manifests:
    return render(CPU_VALUES)


def find(manifests: Manifests, kind: str, name: str) -> dict[str, Any]:
    matches = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} rendered"
    return matches[0]


def of_kind(manifests: Manifests, kind: str) -> Manifests:
    return [m for m in manifests if m["kind"] == kind]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = pod_spec(workload)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def component(workload: dict[str, Any]) -> str:
    label: str = workload["metadata"]["labels"]["app.kubernetes.io/component"]
    return label


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def secret_keys_of(workload: dict[str, Any]) -> set[str]:
    keys: set[str] = set()
    for container in containers(workload):
        for entry in container.get("env", []):
            if ref := entry.get("valueFrom", {}).get("secretKeyRef"):
                keys.add(ref["key"])
    return keys


def game(manifests: Manifests) -> dict[str, Any]:
    return find(manifests, "StatefulSet", f"{PREFIX}-game")


# --------------------------------------------------------------------------- lint and schema


@pytest.mark.parametrize("values", [[], [CPU_VALUES]], ids=["default", "cpu"])
def test_chart_passes_helm_lint_strict(values: list[Path]) -> None:
    report = helm_lint(CHART, values)
    assert "0 chart(s) failed" in report


def test_validator_is_pinned_to_the_named_kubernetes_release() -> None:
    assert kubernetes_version() == KUBERNETES_VERSION


@pytest.mark.parametrize(
    ("values", "settings"),
    [
        ([], {}),
        ([CPU_VALUES], {}),
        ([], {"redis.replicas.count": "0", "agents.storage.shared": "false", "kibana.ingress.enabled": "true"}),
        ([], {"secrets.existingSecret": "hive-secrets", "networkPolicies.enabled": "false"}),
    ],
    ids=["default", "cpu", "no-replicas-per-agent-storage-ingress", "existing-secret"],
)
def test_every_manifest_decodes_strictly_into_the_kubernetes_api_types(
    values: list[Path], settings: dict[str, str]
) -> None:
    text = helm_template(CHART, values, settings, release=RELEASE)
    result = kubecheck(text)
    assert result.passed, result.report
    assert f"against Kubernetes {KUBERNETES_VERSION}" in result.report


def rendered_statefulset_text(mutate: Any) -> str:
    manifests = render()
    mutate(game(manifests))
    return yaml.safe_dump_all(manifests)


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        (lambda sts: sts["spec"]["template"]["spec"]["containers"][0].update(gpus=1), 'unknown field "spec.template'),
        (lambda sts: sts["spec"].update(replicas="two"), "replicas"),
        (lambda sts: sts["spec"]["template"]["spec"].update(containers={"name": "game"}), "containers"),
        (lambda sts: sts.update(apiVersion="apps/v1beta9"), "apps/v1beta9"),
    ],
    ids=["unknown-field", "wrong-type-scalar", "wrong-type-list", "unknown-api-version"],
)
def test_validator_rejects_what_kubernetes_would(mutation: Any, expected: str) -> None:
    result = kubecheck(rendered_statefulset_text(mutation))
    assert not result.passed
    assert expected in result.report, result.report


# --------------------------------------------------------------------------- the agents


def test_agents_are_one_statefulset_pod_each(default_manifests: Manifests) -> None:
    assert game(default_manifests)["spec"]["replicas"] == 2
    assert game(render(**{"agents.count": "7"}))["spec"]["replicas"] == 7


def test_agent_index_is_the_pod_ordinal(default_manifests: Manifests) -> None:
    env = env_of(pod_spec(game(default_manifests))["containers"][0])
    field = env["CONFIG_agent_index"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.labels['apps.kubernetes.io/pod-index']"


def test_agents_claim_one_gpu_each_by_default(default_manifests: Manifests) -> None:
    resources = pod_spec(game(default_manifests))["containers"][0]["resources"]
    assert resources["limits"][GPU] == 1
    tolerations = pod_spec(game(default_manifests))["tolerations"]
    assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in tolerations


def test_cpu_values_claim_no_gpu_anywhere_and_set_the_cpu_device(cpu_manifests: Manifests) -> None:
    assert GPU not in yaml.safe_dump_all(cpu_manifests)
    assert "tolerations" not in pod_spec(game(cpu_manifests))
    settings = find(cpu_manifests, "ConfigMap", f"{PREFIX}-settings")["data"]
    assert settings["CONFIG_device"] == "cpu"


@pytest.mark.parametrize("name", ["game", "monitor"])
def test_settings_reach_agents_and_monitor_as_a_configmap_through_envfrom(name: str) -> None:
    manifests = render(**{"settings.total_steps": "1234", "settings.learning_rate": "0.0003"})
    settings = find(manifests, "ConfigMap", f"{PREFIX}-settings")["data"]
    assert settings["CONFIG_total_steps"] == "1234"
    assert settings["CONFIG_learning_rate"] == "0.0003"
    kind = "StatefulSet" if name == "game" else "Deployment"
    container = pod_spec(find(manifests, kind, f"{PREFIX}-{name}"))["containers"][0]
    assert container["envFrom"] == [{"configMapRef": {"name": f"{PREFIX}-settings"}}]


def test_numbers_of_a_values_file_reach_the_agents_as_written(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("settings:\n  total_steps: 5000000\n  learning_rate: 0.0001\n  learning: false\n")
    settings = find(render(values), "ConfigMap", f"{PREFIX}-settings")["data"]
    assert (settings["CONFIG_total_steps"], settings["CONFIG_learning_rate"]) == ("5000000", "0.0001")
    assert settings["CONFIG_learning"] == "false"


@pytest.mark.parametrize("values", [[], [CPU_VALUES]], ids=["default", "cpu"])
def test_every_setting_of_the_values_is_one_the_agents_know(values: list[Path]) -> None:
    settings = find(render(*values), "ConfigMap", f"{PREFIX}-settings")["data"]
    check_unknown_keys(settings, "the chart's settings ConfigMap")


def test_a_setting_written_with_its_prefix_is_refused() -> None:
    with pytest.raises(KubernetesToolError, match=r"settings\.CONFIG_seed: write the key without"):
        render(**{"settings.CONFIG_seed": "3"})


def test_agents_get_compose_in_stack_addresses_with_the_password_from_the_secret(
    default_manifests: Manifests,
) -> None:
    env = env_of(pod_spec(game(default_manifests))["containers"][0])
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": f"{PREFIX}-secrets", "key": "redis-password"}
    # Kubernetes expands $(REDIS_PASSWORD), defined before it, into the URL.
    assert env["CONFIG_redis_url"]["value"] == f"redis://:$(REDIS_PASSWORD)@{PREFIX}-redis:6379/0"
    assert env["CONFIG_redis_read_url"]["value"] == f"redis://:$(REDIS_PASSWORD)@{PREFIX}-redis-read:6379/0"
    assert env["CONFIG_kafka_bootstrap_servers"]["value"] == f"{PREFIX}-kafka:9092"
    names = list(env)
    assert names.index("REDIS_PASSWORD") < names.index("CONFIG_redis_url")


def test_without_replicas_agents_read_from_the_primary() -> None:
    manifests = render(**{"redis.replicas.count": "0"})
    assert "CONFIG_redis_read_url" not in env_of(pod_spec(game(manifests))["containers"][0])
    assert not [m for m in manifests if m["metadata"]["name"].startswith(f"{PREFIX}-redis-re")]


def test_agents_share_one_read_write_many_model_store_by_default(default_manifests: Manifests) -> None:
    claim = find(default_manifests, "PersistentVolumeClaim", f"{PREFIX}-game-data")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    volumes = pod_spec(game(default_manifests))["volumes"]
    assert volumes == [{"name": "data", "persistentVolumeClaim": {"claimName": f"{PREFIX}-game-data"}}]
    container = pod_spec(game(default_manifests))["containers"][0]
    assert container["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
    env = env_of(container)
    assert (env["CONFIG_model_store"]["value"], env["CONFIG_tensorboard_dir"]["value"]) == (
        "/data/models",
        "/data/tensorboard",
    )
    assert pod_spec(game(default_manifests))["securityContext"]["fsGroup"] == 10001


def test_agents_get_a_volume_each_when_not_shared() -> None:
    manifests = render(**{"agents.storage.shared": "false"})
    assert not of_kind(manifests, "PersistentVolumeClaim")
    (template,) = game(manifests)["spec"]["volumeClaimTemplates"]
    assert (template["metadata"]["name"], template["spec"]["accessModes"]) == ("data", ["ReadWriteOnce"])
    assert "volumes" not in pod_spec(game(manifests))


# --------------------------------------------------------------------------- Redis, secrets


def test_redis_runs_compose_start_command_and_acl(default_manifests: Manifests, compose_model: dict[str, Any]) -> None:
    compose_redis = compose_model["services"]["redis"]
    compose_script = compose_redis["command"][2].replace("$$", "$")
    compose_acl = service_environment(compose_model, "redis")["REDIS_MONITOR_ACL"]
    for name in ("redis", "redis-replica"):
        container = pod_spec(find(default_manifests, "StatefulSet", f"{PREFIX}-{name}"))["containers"][0]
        assert container["command"][:2] == ["/bin/sh", "-ec"]
        assert container["command"][2] == compose_script
        env = env_of(container)
        assert env["REDIS_MONITOR_ACL"]["value"] == compose_acl
        assert env["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"]["key"] == "redis-password"
        assert env["REDIS_MONITOR_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "redis-monitor-password"
    replica = pod_spec(find(default_manifests, "StatefulSet", f"{PREFIX}-redis-replica"))["containers"][0]
    assert env_of(replica)["REDIS_REPLICA_OF"]["value"] == f"{PREFIX}-redis 6379"
    assert "REDIS_REPLICA_OF" not in env_of(
        pod_spec(find(default_manifests, "StatefulSet", f"{PREFIX}-redis"))["containers"][0]
    )


def test_redis_keeps_its_data_on_volumes(default_manifests: Manifests) -> None:
    for name in ("redis", "redis-replica", "kafka", "elasticsearch"):
        workload = find(default_manifests, "StatefulSet", f"{PREFIX}-{name}")
        claim = workload["spec"]["volumeClaimTemplates"][0]
        mounts = pod_spec(workload)["containers"][0]["volumeMounts"]
        assert claim["metadata"]["name"] in {mount["name"] for mount in mounts}, name


def test_the_monitor_logs_in_as_the_read_only_acl_user(default_manifests: Manifests) -> None:
    env = env_of(pod_spec(find(default_manifests, "Deployment", f"{PREFIX}-monitor"))["containers"][0])
    assert env["CONFIG_redis_url"]["value"] == f"redis://monitor:$(REDIS_MONITOR_PASSWORD)@{PREFIX}-redis:6379/0"
    assert env["REDIS_MONITOR_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "redis-monitor-password"


def test_each_workload_holds_only_the_secrets_it_uses(default_manifests: Manifests) -> None:
    workloads = [m for m in default_manifests if m["kind"] in WORKLOADS]
    for workload in workloads:
        for key in secret_keys_of(workload):
            assert component(workload) in SECRET_HOLDERS[key], f"{component(workload)} holds {key}"
    held = {key for workload in workloads for key in secret_keys_of(workload)}
    assert held == set(SECRET_HOLDERS)


def test_secret_values_are_only_in_the_secret() -> None:
    values = {
        "secrets.redisPassword": "chart-redis-default-1a2b",
        "secrets.redisMonitorPassword": "chart-redis-monitor-3c4d",
        "secrets.elasticPassword": "chart-elastic-5e6f",
        "secrets.kibanaPassword": "chart-kibana-7a8b",
        "secrets.logstashPassword": "chart-logstash-9c0d",
        "secrets.kibanaEncryptionKey": "chart-kibana-encryption-key-0123456789",
    }
    manifests = render(**values)
    secret = find(manifests, "Secret", f"{PREFIX}-secrets")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    others = yaml.safe_dump_all([m for m in manifests if m is not secret])
    for value in values.values():
        assert value not in others
        assert value not in yaml.safe_dump(secret)  # base64 in data, never in clear


def test_an_existing_secret_replaces_the_chart_one() -> None:
    manifests = render(**{"secrets.existingSecret": "hive-secrets"})
    assert not of_kind(manifests, "Secret")
    names = {
        entry["valueFrom"]["secretKeyRef"]["name"]
        for workload in manifests
        if workload["kind"] in WORKLOADS
        for container in containers(workload)
        for entry in container.get("env", [])
        if "secretKeyRef" in entry.get("valueFrom", {})
    }
    assert names == {"hive-secrets"}


def test_a_password_unfit_for_a_redis_url_is_refused() -> None:
    with pytest.raises(KubernetesToolError, match="redis-password may hold only letters, digits"):
        render(**{"secrets.redisPassword": "pass@word"})


# --------------------------------------------------------------------------- exposure, policies


def test_only_kibana_is_reachable_from_outside(default_manifests: Manifests) -> None:
    exposed = {m["metadata"]["name"] for m in of_kind(default_manifests, "Service") if m["spec"]["type"] != "ClusterIP"}
    assert exposed == {f"{PREFIX}-kibana"}
    with_ingress = render(**{"kibana.ingress.enabled": "true"})
    backends = {
        path["backend"]["service"]["name"]
        for ingress in of_kind(with_ingress, "Ingress")
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert backends == {f"{PREFIX}-kibana"}
    for workload in (m for m in default_manifests if m["kind"] in WORKLOADS):
        assert not pod_spec(workload).get("hostNetwork")
        for container in containers(workload):
            assert all("hostPort" not in port for port in container.get("ports", []))


@pytest.mark.parametrize(
    ("server", "servers", "clients"),
    [
        ("redis", {"redis", "redis-replica"}, {"game", "monitor", "redis", "redis-replica"}),
        ("kafka", {"kafka"}, {"game", "monitor", "logstash", "kafka-topics", "kafka"}),
        ("elasticsearch", {"elasticsearch"}, {"logstash", "kibana", "elasticsearch-setup", "kibana-setup"}),
    ],
)
def test_network_policy_admits_only_the_servers_clients(
    default_manifests: Manifests, server: str, servers: set[str], clients: set[str]
) -> None:
    policy = find(default_manifests, "NetworkPolicy", f"{PREFIX}-{server}")["spec"]
    assert policy["policyTypes"] == ["Ingress"]

    def components(selector: dict[str, Any]) -> set[str]:
        (expression,) = [e for e in selector["matchExpressions"] if e["key"] == "app.kubernetes.io/component"]
        return set(expression["values"])

    assert components(policy["podSelector"]) == servers
    (rule,) = policy["ingress"]
    (source,) = rule["from"]
    assert components(source["podSelector"]) == clients
    # Every client named is a workload the chart runs.
    workloads = {component(m) for m in default_manifests if m["kind"] in WORKLOADS}
    assert clients <= workloads


# --------------------------------------------------------------------------- as compose runs it


def seconds(duration: str) -> int:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert match and duration, duration
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


@pytest.mark.parametrize("service", sorted(PROBED))
def test_readiness_probes_equal_compose_healthchecks(
    default_manifests: Manifests, compose_model: dict[str, Any], service: str
) -> None:
    healthcheck = compose_model["services"][service]["healthcheck"]
    kind, name = PROBED[service]
    probe = pod_spec(find(default_manifests, kind, name))["containers"][0]["readinessProbe"]
    assert healthcheck["test"][0] == "CMD-SHELL"
    assert probe["exec"]["command"] == ["/bin/sh", "-c", healthcheck["test"][1].replace("$$", "$")]
    assert probe["periodSeconds"] == seconds(healthcheck["interval"])
    assert probe["timeoutSeconds"] == seconds(healthcheck["timeout"])
    assert probe["failureThreshold"] == healthcheck["retries"]
    assert probe["initialDelaySeconds"] == seconds(healthcheck["start_period"])


def test_images_are_pinned_to_the_env_example_versions(default_manifests: Manifests) -> None:
    versions = env_example_values()
    expected = {
        f"redis:{versions['REDIS_VERSION']}-alpine",
        f"apache/kafka:{versions['KAFKA_VERSION']}",
        f"elasticsearch:{versions['ELASTIC_VERSION']}",
        f"logstash:{versions['ELASTIC_VERSION']}",
        f"kibana:{versions['ELASTIC_VERSION']}",
        "borg-dqn/game:local",
        "borg-dqn/monitor:local",
    }
    images = {
        container["image"]
        for workload in default_manifests
        if workload["kind"] in WORKLOADS
        for container in containers(workload)
    }
    assert images == expected
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == versions["ELASTIC_VERSION"]


def test_every_container_requests_cpu_and_memory(default_manifests: Manifests) -> None:
    for workload in (m for m in default_manifests if m["kind"] in WORKLOADS):
        for container in containers(workload):
            requests = container.get("resources", {}).get("requests", {})
            assert {"cpu", "memory"} <= set(requests), f"{workload['metadata']['name']}/{container['name']}"


def test_chart_carries_the_repository_stack_files_unchanged(default_manifests: Manifests) -> None:
    setup = find(default_manifests, "ConfigMap", f"{PREFIX}-elasticsearch-setup")["data"]
    templates = sorted((REPO_ROOT / "elasticsearch" / "templates").glob("*.json"))
    assert setup == {
        "setup.sh": (REPO_ROOT / "elasticsearch" / "setup.sh").read_text(),
        **{path.name: path.read_text() for path in templates},
    }
    logstash = find(default_manifests, "ConfigMap", f"{PREFIX}-logstash")["data"]
    assert logstash == {
        "logstash.yml": (REPO_ROOT / "logstash" / "config" / "logstash.yml").read_text(),
        "pipelines.yml": (REPO_ROOT / "logstash" / "config" / "pipelines.yml").read_text(),
        "borg.conf": (REPO_ROOT / "logstash" / "pipeline" / "borg.conf").read_text(),
    }
    kibana = find(default_manifests, "ConfigMap", f"{PREFIX}-kibana-setup")["data"]
    assert kibana == {
        "setup.sh": (REPO_ROOT / "kibana" / "setup.sh").read_text(),
        "dashboard.ndjson": (REPO_ROOT / "kibana" / "dashboard.ndjson").read_text(),
    }


def test_logstash_mounts_the_pipeline_where_pipelines_yml_points(
    default_manifests: Manifests, compose_model: dict[str, Any]
) -> None:
    mounts = pod_spec(find(default_manifests, "Deployment", f"{PREFIX}-logstash"))["containers"][0]["volumeMounts"]
    targets = {mount["mountPath"] for mount in mounts}
    compose_targets = {volume["target"] for volume in compose_model["services"]["logstash"]["volumes"]}
    # compose mounts the pipeline folder, the chart its one file.
    assert targets == (compose_targets - {"/usr/share/logstash/pipeline"}) | {"/usr/share/logstash/pipeline/borg.conf"}


def shell_scripts(manifests: Manifests) -> Iterator[tuple[str, str, str]]:
    """(where, shell, script) of every container command and probe run by a shell with -c."""
    for workload in (m for m in manifests if m["kind"] in WORKLOADS):
        for container in containers(workload):
            probe = container.get("readinessProbe", {}).get("exec", {}).get("command", [])
            for what, command in (("command", container.get("command", [])), ("probe", probe)):
                if len(command) == 3 and command[0] in {"/bin/sh", "/bin/bash"} and command[1] in {"-c", "-ec"}:
                    yield f"{workload['metadata']['name']}/{container['name']} {what}", command[0], command[2]


def test_every_shell_script_of_the_chart_passes_shellcheck(default_manifests: Manifests, tmp_path: Path) -> None:
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    scripts = list(shell_scripts(default_manifests))
    assert len(scripts) >= 8
    for index, (where, shell, script) in enumerate(scripts):
        path = tmp_path / f"script-{index}.sh"
        path.write_text(f"#!{shell}\n{script}\n")
        result = subprocess.run([shellcheck, str(path)], capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, f"{where}:\n{result.stdout}"
