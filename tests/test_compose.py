"""compose.yaml, as a real compose implementation renders it with .env.example as .env:
the services, their gates, volumes, ports, the GPU and the CPU way, pinned images."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from borg_harness.compose import ComposeError

from conftest import (
    COMPOSE_CPU_FILE,
    COMPOSE_FILE,
    COMPOSE_PORTS_FILE,
    COMPOSE_REPLICA_FILE,
    ENV_EXAMPLE,
    TEST_SECRETS,
    env_example_values,
    filled_env_text,
    render_compose,
    service_environment,
)

COMPOSE_SPEC = Path("/work/shared/schemas/compose-spec.json")
SERVICES = {
    "redis",
    "kafka",
    "kafka-topics",
    "elasticsearch",
    "elasticsearch-setup",
    "logstash",
    "kibana",
    "kibana-setup",
    "game",
    "monitor",
}
STATEFUL = {"redis", "kafka", "elasticsearch", "logstash", "kibana"}
ONE_SHOTS = {"kafka-topics", "elasticsearch-setup", "kibana-setup"}
BUILT = {"game", "monitor"}
# Pulled image -> the .env key of its version.
IMAGE_VERSIONS = {
    "redis": ("redis", "REDIS_VERSION"),
    "kafka": ("apache/kafka", "KAFKA_VERSION"),
    "kafka-topics": ("apache/kafka", "KAFKA_VERSION"),
    "elasticsearch": ("elasticsearch", "ELASTIC_VERSION"),
    "elasticsearch-setup": ("elasticsearch", "ELASTIC_VERSION"),
    "logstash": ("logstash", "ELASTIC_VERSION"),
    "kibana": ("kibana", "ELASTIC_VERSION"),
    "kibana-setup": ("elasticsearch", "ELASTIC_VERSION"),
}
# The in-stack addresses compose gives each built service (the Redis logins: tests/test_security.py).
IN_STACK_ENVIRONMENT = {
    "game": {
        "CONFIG_redis_url": f"redis://:{TEST_SECRETS['REDIS_PASSWORD']}@redis:6379/0",
        "CONFIG_kafka_bootstrap_servers": "kafka:9092",
        "CONFIG_model_store": "/data/models",
        "CONFIG_tensorboard_dir": "/data/tensorboard",
    },
    "monitor": {
        "CONFIG_redis_url": f"redis://monitor:{TEST_SECRETS['REDIS_MONITOR_PASSWORD']}@redis:6379/0",
        "CONFIG_kafka_bootstrap_servers": "kafka:9092",
    },
}


def raw_compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return document


def test_the_services_are_the_stack() -> None:
    assert set(raw_compose()["services"]) == SERVICES


def test_no_obsolete_version_key() -> None:
    assert "version" not in raw_compose()
    assert "version" not in yaml.safe_load(COMPOSE_CPU_FILE.read_text().replace("!reset", ""))
    assert "version" not in yaml.safe_load(COMPOSE_PORTS_FILE.read_text())


@pytest.mark.parametrize("variant", ["compose.yaml", "with compose.cpu.yaml"])
def test_rendered_model_follows_the_compose_specification(
    variant: str, compose_model: dict[str, Any], compose_cpu_model: dict[str, Any]
) -> None:
    model = compose_model if variant == "compose.yaml" else compose_cpu_model
    schema = json.loads(COMPOSE_SPEC.read_text())
    errors = [f"{error.json_path}: {error.message}" for error in jsonschema.Draft7Validator(schema).iter_errors(model)]
    assert errors == []


def test_a_missing_version_stops_compose_with_a_message_naming_it(tmp_path: Path) -> None:
    env_text = re.sub(r"^ELASTIC_VERSION=.*$", "", filled_env_text(), flags=re.MULTILINE)
    with pytest.raises(ComposeError, match="ELASTIC_VERSION"):
        render_compose(tmp_path, ["compose.yaml"], env_text)


@pytest.mark.parametrize("service", sorted(STATEFUL))
def test_stateful_services_have_a_healthcheck_with_a_start_period(service: str, compose_model: dict[str, Any]) -> None:
    healthcheck = compose_model["services"][service]["healthcheck"]
    assert healthcheck["test"][0] in ("CMD", "CMD-SHELL")
    assert healthcheck.get("disable") is not True
    for key in ("interval", "timeout", "retries", "start_period"):
        assert healthcheck.get(key), f"{service}: healthcheck without {key}"


def test_every_dependency_waits_for_health_or_completion(compose_model: dict[str, Any]) -> None:
    services = compose_model["services"]
    for name, service in services.items():
        for dependency, gate in service.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dependency in ONE_SHOTS else "service_healthy"
            assert gate["condition"] == expected, f"{name} -> {dependency}"
            if expected == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}, which has no healthcheck"


@pytest.mark.parametrize(
    ("service", "gates"),
    [
        ("kafka-topics", {"kafka"}),
        ("elasticsearch-setup", {"elasticsearch"}),
        ("logstash", {"kafka", "kafka-topics", "elasticsearch", "elasticsearch-setup"}),
        ("kibana", {"elasticsearch", "elasticsearch-setup"}),
        ("kibana-setup", {"kibana"}),
        ("game", {"redis", "kafka", "kafka-topics"}),
        ("monitor", {"redis", "kafka", "kafka-topics"}),
    ],
)
def test_start_order(service: str, gates: set[str], compose_model: dict[str, Any]) -> None:
    assert set(compose_model["services"][service]["depends_on"]) == gates


def test_one_shots_run_once(compose_model: dict[str, Any]) -> None:
    for name in ONE_SHOTS:
        service = compose_model["services"][name]
        assert service.get("restart", "no") == "no", name
        assert "ports" not in service


def test_game_reserves_the_gpu(compose_model: dict[str, Any]) -> None:
    (device,) = compose_model["services"]["game"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert device["capabilities"] == ["gpu"]
    assert device["count"] in (-1, "all") or int(device["count"]) >= 1


def test_game_scales_with_distinct_replicas(compose_model: dict[str, Any]) -> None:
    game = compose_model["services"]["game"]
    for fixed in ("container_name", "hostname", "ports"):
        assert fixed not in game, f"game sets {fixed}: `--scale game=N` would collide"
    # Agent ids default to 'agent-<index>' with the index leased in Redis: replicas differ.
    environment = game["environment"]
    assert "CONFIG_agent_index" not in environment and "CONFIG_agent_id" not in environment


def test_game_restarts_on_failure_a_bounded_number_of_times(compose_model: dict[str, Any]) -> None:
    # on-failure: an agent that finished its steps (exit 0) stays finished; a bound: an agent
    # that cannot start (a configuration error) does not restart forever.
    policy, _, retries = str(compose_model["services"]["game"]["restart"]).partition(":")
    assert policy == "on-failure"
    assert retries.isdigit() and 1 <= int(retries) <= 10, f"restart {policy!r} without a bounded retry count"


@pytest.mark.parametrize("service", sorted(BUILT))
def test_services_get_env_file_config_and_in_stack_addresses(service: str, tmp_path: Path) -> None:
    env_text = filled_env_text() + "\nCONFIG_run_id=from-env-file\nCONFIG_redis_url=redis://elsewhere:1/0\n"
    environment = render_compose(tmp_path, ["compose.yaml"], env_text)["services"][service]["environment"]
    assert environment["CONFIG_run_id"] == "from-env-file", "the .env CONFIG_ keys reach the container"
    expected = IN_STACK_ENVIRONMENT[service]
    assert {key: environment[key] for key in expected} == expected, "compose's in-stack addresses win"


def test_the_model_store_and_tensorboard_dir_are_named_volumes(compose_model: dict[str, Any]) -> None:
    game = compose_model["services"]["game"]
    mounts = {volume["target"]: volume for volume in game["volumes"]}
    for key in ("CONFIG_model_store", "CONFIG_tensorboard_dir"):
        mount = mounts[game["environment"][key]]
        assert mount["type"] == "volume" and mount["source"] in compose_model["volumes"]


def test_data_lives_in_named_volumes(compose_model: dict[str, Any]) -> None:
    expected = {
        "redis": "/data",
        "elasticsearch": "/usr/share/elasticsearch/data",
        "game": "/data/models",
    }
    services = compose_model["services"]
    for service, target in expected.items():
        (mount,) = [volume for volume in services[service]["volumes"] if volume["target"] == target]
        assert mount["type"] == "volume" and mount["source"] in compose_model["volumes"]
    assert set(compose_model["volumes"]) == {"redis-data", "models", "tensorboard", "es-data"}
    # The append-only file is on (the whole start command is run by tests/test_security.py).
    assert re.search(r"exec redis-server - .*--appendonly yes", " ".join(services["redis"]["command"]))


def test_configuration_is_bind_mounted_read_only_from_the_repository(compose_model: dict[str, Any]) -> None:
    binds = [
        (name, volume)
        for name, service in compose_model["services"].items()
        for volume in service.get("volumes", [])
        if volume["type"] == "bind"
    ]
    assert binds
    for name, volume in binds:
        assert volume.get("read_only") is True, f"{name}: {volume['source']} is writable"
        assert Path(volume["source"]).exists(), f"{name}: {volume['source']} is missing"
        assert Path(volume["source"]).name in ("logstash.yml", "pipelines.yml", "pipeline", "elasticsearch", "kibana")


@pytest.mark.parametrize("service", sorted(IMAGE_VERSIONS))
def test_pulled_images_are_pinned_by_env(service: str, compose_model: dict[str, Any]) -> None:
    repository, key = IMAGE_VERSIONS[service]
    version = env_example_values()[key]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{key}={version} is not an exact release"
    image = compose_model["services"][service]["image"]
    assert image in (f"{repository}:{version}", f"{repository}:{version}-alpine")
    # In compose.yaml the version is a required variable, never a default that could drift.
    assert f"${{{key}:?" in raw_compose()["services"][service]["image"]


def test_elastic_stack_components_share_one_version(compose_model: dict[str, Any]) -> None:
    tags = {compose_model["services"][name]["image"].split(":")[1] for name in ("elasticsearch", "logstash", "kibana")}
    assert len(tags) == 1


def test_no_image_is_latest(compose_model: dict[str, Any], compose_cpu_model: dict[str, Any]) -> None:
    for model in (compose_model, compose_cpu_model):
        for name, service in model["services"].items():
            image = service["image"]
            assert ":" in image.rsplit("/", 1)[-1], f"{name}: {image} has no tag"
            assert not image.endswith(":latest"), name


@pytest.mark.parametrize("service", sorted(BUILT))
def test_built_services_build_from_the_repository_root_with_the_pinned_python(
    service: str, compose_model: dict[str, Any]
) -> None:
    build = compose_model["services"][service]["build"]
    assert build["dockerfile"] == f"{service}/Dockerfile"
    context = Path(build["context"])
    # The project directory, i.e. the repository root: proto/ and constraints.txt are in reach.
    for needed in (build["dockerfile"], "constraints.txt", "proto/transition.proto", ".dockerignore"):
        assert (context / needed).is_file(), needed
    assert build["args"]["PYTHON_VERSION"] == env_example_values()["PYTHON_VERSION"]


def test_the_cpu_override_drops_the_gpu_and_builds_a_cpu_image(
    compose_model: dict[str, Any], compose_cpu_model: dict[str, Any]
) -> None:
    game = compose_cpu_model["services"]["game"]
    reservations = game.get("deploy", {}).get("resources", {}).get("reservations", {})
    assert not reservations.get("devices")
    assert game["environment"]["CONFIG_device"] == "cpu"
    assert "TORCH_INDEX_URL" in game["build"]["args"]
    assert game["image"] != compose_model["services"]["game"]["image"], "a CPU image must not replace the GPU one"

    def others(model: dict[str, Any]) -> str:
        services = {name: service for name, service in model["services"].items() if name != "game"}
        return json.dumps(services, sort_keys=True).replace(model["services"]["game"]["build"]["context"], "<project>")

    assert others(compose_cpu_model) == others(compose_model), "the override changes the game service only"


def test_env_example_documents_every_variable_compose_interpolates() -> None:
    used = set()
    for path in (COMPOSE_FILE, COMPOSE_CPU_FILE, COMPOSE_PORTS_FILE, COMPOSE_REPLICA_FILE):
        # `$${NAME...}` is the container shell's, not compose's.
        used |= set(re.findall(r"(?<!\$)\$\{(\w+)", path.read_text()))
    text = ENV_EXAMPLE.read_text()
    undocumented = {name for name in used if not re.search(rf"^#? ?{name}=", text, flags=re.MULTILINE)}
    assert undocumented == set()


# --------------------------------------------------------------------------- Redis read replica


def test_the_replica_is_the_redis_service_made_a_replica_of_it(compose_replica_model: dict[str, Any]) -> None:
    services = compose_replica_model["services"]
    primary, replica = services["redis"], services["redis-replica"]
    replica_environment = service_environment(compose_replica_model, "redis-replica")
    # Same image, user, start command and logins: the same password and ACL user `monitor`.
    for key in ("image", "user", "command", "healthcheck", "restart"):
        assert replica[key] == primary[key], key
    primary_environment = service_environment(compose_replica_model, "redis")
    assert replica_environment == {**primary_environment, "REDIS_REPLICA_OF": "redis 6379"}
    assert "REDIS_REPLICA_OF" not in primary_environment
    assert replica["depends_on"]["redis"]["condition"] == "service_healthy"
    # A volume of its own, and no published port.
    assert [(v["source"], v["target"]) for v in replica["volumes"]] == [("redis-replica-data", "/data")]
    assert "redis-replica-data" in compose_replica_model["volumes"]
    assert "ports" not in replica


def test_the_replica_start_command_makes_a_replica_only_when_told(compose_model: dict[str, Any]) -> None:
    script = compose_model["services"]["redis"]["command"][2]
    assert "$${REDIS_REPLICA_OF:+replicaof $$REDIS_REPLICA_OF}" in script
    # The replica logs in to the primary as its default user.
    assert "$${REDIS_REPLICA_OF:+masterauth $$REDISCLI_AUTH}" in script


def test_with_the_replica_agents_read_from_it_and_write_to_the_primary(
    compose_model: dict[str, Any], compose_replica_model: dict[str, Any]
) -> None:
    game = service_environment(compose_replica_model, "game")
    password = TEST_SECRETS["REDIS_PASSWORD"]
    assert game["CONFIG_redis_read_url"] == f"redis://:{password}@redis-replica:6379/0"
    assert game["CONFIG_redis_url"] == f"redis://:{password}@redis:6379/0"
    assert compose_replica_model["services"]["game"]["depends_on"]["redis-replica"]["condition"] == "service_healthy"
    assert "CONFIG_redis_read_url" not in service_environment(compose_model, "game")


def test_the_replica_override_changes_nothing_else(
    compose_model: dict[str, Any], compose_replica_model: dict[str, Any]
) -> None:
    def others(model: dict[str, Any]) -> str:
        services = {name: s for name, s in model["services"].items() if name not in {"game", "redis-replica"}}
        return json.dumps(services, sort_keys=True).replace(model["services"]["game"]["build"]["context"], "<project>")

    assert others(compose_replica_model) == others(compose_model)
