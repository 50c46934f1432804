"""The stack's security: required passwords, who gets which secret, published ports, non-root
containers, and the logins themselves against real servers.

compose.yaml is rendered by a real compose implementation with .env.example plus test
passwords (conftest.TEST_SECRETS). Redis runs the redis service's own start command (its
configuration on stdin, the monitor's ACL user included), and the real monitor reads it as
that user. Elasticsearch is the harness's node with security on (users and passwords over
plain HTTP, as compose runs it): the real elasticsearch/setup.sh logs in to it as `elastic`,
and the healthcheck runs against it as it is written in compose.yaml.

That node cannot store users or roles made with the security API (no analysis-common module
for the .security index: borg_harness.search_server), so what elasticsearch/setup.sh sends
for kibana_system and logstash_writer is checked against a stand-in, and the role it sends
is then given, as a file-realm role, to Logstash's user on the real node, where its
privileges are tried (and the whole stack run is indexed as that user: conftest).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from borg_game.redis_access import redis_problem
from borg_game.redis_server import find_redis_server, free_port
from borg_harness.compose import ComposeError
from borg_harness.search_server import SearchServer
from borg_monitor.redis_probe import RedisProbe, connect
from borg_monitor.settings import MonitorSettings, load_settings
from dotenv import dotenv_values

from conftest import (
    ENV_EXAMPLE,
    REPO_ROOT,
    TEMPLATE_DIR,
    TEST_SECRETS,
    StackRun,
    env_example_values,
    filled_env_text,
    monitor_acl,
    redis_command,
    render_compose,
    run_elasticsearch_setup,
    service_environment,
    setup_request,
)
from http_stand_in import RecordedRequest, stand_in
from search_client import SearchRequestError, es_request

# Which secret of .env each service may hold (in its environment, nowhere else).
SECRETS_BY_SERVICE: dict[str, set[str]] = {
    "redis": {"REDIS_PASSWORD", "REDIS_MONITOR_PASSWORD"},
    "kafka": set(),
    "kafka-topics": set(),
    "elasticsearch": {"ELASTIC_PASSWORD"},
    "elasticsearch-setup": {"ELASTIC_PASSWORD", "KIBANA_PASSWORD", "LOGSTASH_PASSWORD"},
    "logstash": {"LOGSTASH_PASSWORD"},
    "kibana": {"KIBANA_PASSWORD", "KIBANA_ENCRYPTION_KEY"},
    "kibana-setup": {"ELASTIC_PASSWORD"},
    "game": {"REDIS_PASSWORD"},
    "monitor": {"REDIS_MONITOR_PASSWORD"},
}
BUILT = {"game", "monitor"}
ROOT_USERS = {"root", "0"}


def strings(value: Any) -> Iterator[str]:
    """Every string inside a JSON value (keys included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def secrets_in(value: Any) -> set[str]:
    """The names of the TEST_SECRETS whose value occurs in `value`."""
    texts = list(strings(value))
    return {name for name, secret in TEST_SECRETS.items() if any(secret in text for text in texts)}


def shell_command(compose_text: str) -> str:
    """A command as compose renders it (`$$` escaped) as the container's shell gets it."""
    return compose_text.replace("$$", "$")


# --------------------------------------------------------------------------- compose


def test_env_example_leaves_every_secret_for_the_user_to_set() -> None:
    values = env_example_values()
    secret_keys = {key for key in values if re.search(r"_(PASSWORD|KEY)$", key)}
    assert secret_keys == set(TEST_SECRETS), "a new secret in .env.example needs a place in TEST_SECRETS"
    assert {key: values[key] for key in secret_keys} == dict.fromkeys(secret_keys, ""), "no default password"


@pytest.mark.parametrize("secret", sorted(TEST_SECRETS))
def test_compose_refuses_to_render_without_a_secret_naming_it(secret: str, tmp_path: Path) -> None:
    env_text = filled_env_text({key: value for key, value in TEST_SECRETS.items() if key != secret})
    with pytest.raises(ComposeError, match=rf"{secret}.*make \.env"):
        render_compose(tmp_path, ["compose.yaml"], env_text)


def test_env_example_as_it_is_does_not_start_the_stack(tmp_path: Path) -> None:
    with pytest.raises(ComposeError, match=r"set \w+_(PASSWORD|KEY) in \.env"):
        render_compose(tmp_path, ["compose.yaml"], ENV_EXAMPLE.read_text())


def test_only_kibana_is_published_and_only_on_loopback(compose_model: dict[str, Any]) -> None:
    published = {name: service["ports"] for name, service in compose_model["services"].items() if service.get("ports")}
    assert list(published) == ["kibana"]
    assert [(port["host_ip"], port["target"], port["published"]) for port in published["kibana"]] == [
        ("127.0.0.1", 5601, "5601")
    ]
    for service in compose_model["services"].values():
        assert service.get("network_mode") != "host"


def test_compose_ports_publishes_redis_kafka_and_elasticsearch_on_loopback_only(tmp_path: Path) -> None:
    model = render_compose(tmp_path, ["compose.yaml", "compose.ports.yaml"])
    published = {
        name: [(port["host_ip"], port["target"], port["published"]) for port in service["ports"]]
        for name, service in model["services"].items()
        if service.get("ports")
    }
    assert published == {
        "kibana": [("127.0.0.1", 5601, "5601")],
        "redis": [("127.0.0.1", 6379, "6379")],
        "kafka": [("127.0.0.1", 9094, "9094")],
        "elasticsearch": [("127.0.0.1", 9200, "9200")],
    }
    # Kafka tells clients on this host to come back to the published port.
    advertised = model["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert "EXTERNAL://localhost:9094" in advertised


def test_every_container_runs_as_a_non_root_user(compose_model: dict[str, Any]) -> None:
    for name, service in compose_model["services"].items():
        if name in BUILT:
            # Their images' USER (game/Dockerfile, monitor/Dockerfile; tests/test_dockerfiles.py).
            assert "user" not in service, f"{name}: compose must not override the image's non-root USER"
            dockerfile = (REPO_ROOT / name / "Dockerfile").read_text()
            (user,) = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.MULTILINE)
            assert user.split(":")[0] not in ROOT_USERS
        else:
            user = str(service.get("user", ""))
            assert user, f"{name}: no user (pulled images say which non-root user they run as)"
            assert user.split(":")[0] not in ROOT_USERS, f"{name} runs as {user}"
        assert not service.get("privileged"), name
        assert not service.get("cap_add"), name


def test_each_service_holds_only_the_secrets_it_uses(compose_model: dict[str, Any]) -> None:
    held = {name: secrets_in(service.get("environment", {})) for name, service in compose_model["services"].items()}
    assert held == SECRETS_BY_SERVICE


def test_the_whole_env_file_reaches_game_and_monitor_with_the_stack_secrets_blanked(
    compose_model: dict[str, Any],
) -> None:
    for name in BUILT:
        environment = service_environment(compose_model, name)
        # compose renders env_file into the environment: every key of .env is there.
        assert environment["ELASTIC_VERSION"] == env_example_values()["ELASTIC_VERSION"]
        assert {key: environment[key] for key in TEST_SECRETS} == dict.fromkeys(TEST_SECRETS, "")


def test_no_secret_outside_an_environment(compose_model: dict[str, Any]) -> None:
    """Not in a command line, an entrypoint, a healthcheck, a build argument (an image) or a label."""
    for name, service in compose_model["services"].items():
        rest = {key: value for key, value in service.items() if key != "environment"}
        assert secrets_in(rest) == set(), name
    assert secrets_in({key: value for key, value in compose_model.items() if key != "services"}) == set()


def test_healthchecks_take_passwords_from_the_environment(compose_model: dict[str, Any]) -> None:
    services = compose_model["services"]
    redis_environment = service_environment(compose_model, "redis")
    assert redis_environment["REDISCLI_AUTH"] == TEST_SECRETS["REDIS_PASSWORD"], "redis-cli logs in from its env"
    elasticsearch_check = " ".join(services["elasticsearch"]["healthcheck"]["test"])
    assert "$$ELASTIC_PASSWORD" in elasticsearch_check and "-K -" in elasticsearch_check
    for name, service in services.items():
        check = " ".join(service.get("healthcheck", {}).get("test", []))
        assert not re.search(r"(\s-a\s|--pass|\s-u\s|--user\s)", check), f"{name}: a password flag on the command line"


def test_the_setup_one_shots_log_in(compose_model: dict[str, Any]) -> None:
    for name in ("elasticsearch-setup", "kibana-setup"):
        environment = service_environment(compose_model, name)
        assert environment["ELASTIC_USER"] == "elastic"
        assert environment["ELASTIC_PASSWORD"] == TEST_SECRETS["ELASTIC_PASSWORD"]
    setup = service_environment(compose_model, "elasticsearch-setup")
    assert setup["KIBANA_SYSTEM_PASSWORD"] == service_environment(compose_model, "kibana")["ELASTICSEARCH_PASSWORD"]
    assert (
        setup["LOGSTASH_WRITER_PASSWORD"]
        == service_environment(compose_model, "logstash")["BORG_ELASTICSEARCH_PASSWORD"]
    )
    elasticsearch = service_environment(compose_model, "elasticsearch")
    assert elasticsearch["xpack.security.enabled"] == "true"


def test_make_env_writes_fresh_random_secrets_that_compose_accepts(tmp_path: Path) -> None:
    for name in ("Makefile", ".env.example"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    make = ["make", "--no-print-directory", "-C", str(tmp_path), f"PYTHON={sys.executable}", ".env"]
    subprocess.run(make, check=True, capture_output=True, text=True, timeout=60)
    env_file = tmp_path / ".env"
    assert env_file.stat().st_mode & 0o777 == 0o600, "readable by its owner only"
    values = {key: value or "" for key, value in dotenv_values(env_file).items()}
    generated = [values[key] for key in TEST_SECRETS]
    assert all(re.fullmatch(r"[0-9a-f]{48}", value) for value in generated), generated
    assert len(set(generated)) == len(generated)
    assert {key: value for key, value in values.items() if key not in TEST_SECRETS} == {
        key: value for key, value in env_example_values().items() if key not in TEST_SECRETS
    }
    subprocess.run(make, check=True, capture_output=True, text=True, timeout=60)
    assert dotenv_values(env_file) == values, "an existing .env is never overwritten"
    model = render_compose(tmp_path / "project", ["compose.yaml"], env_file.read_text())
    assert service_environment(model, "elasticsearch")["ELASTIC_PASSWORD"] == values["ELASTIC_PASSWORD"]


# --------------------------------------------------------------------------- Redis


class StackRedis:
    """The redis service's own start command, run here on a free port."""

    def __init__(self, model: dict[str, Any], workdir: Path, service: str = "redis", **environment: str) -> None:
        self.port = free_port()
        self.environment = {**service_environment(model, service), **environment}
        script = shell_command(model["services"][service]["command"][2])
        # The one change: a free port on loopback instead of the container's 6379.
        self.script = script.replace("redis-server -", f"redis-server - --port {self.port} --bind 127.0.0.1", 1)
        assert self.script != script
        binary = find_redis_server()
        self.process = subprocess.Popen(
            ["/bin/sh", "-ec", self.script],
            cwd=workdir,
            env={**self.environment, "PATH": f"{Path(binary).parent}:{os.environ['PATH']}"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def url(self, compose_url: str) -> str:
        """A compose redis:// URL (host `redis`) pointed at this server."""
        return compose_url.replace("@redis:6379/", f"@127.0.0.1:{self.port}/")

    def wait_ready(self, password: str, timeout: float = 15.0) -> None:
        client = redis.Redis(port=self.port, password=password, socket_timeout=2)
        deadline = time.monotonic() + timeout
        try:
            while True:
                assert self.process.poll() is None, self.output()
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    assert time.monotonic() < deadline, "redis did not answer"
                    time.sleep(0.05)
        finally:
            client.close()

    def output(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
        text, _ = self.process.communicate(timeout=30)
        return text

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.communicate(timeout=30)


@pytest.fixture(scope="module")
def stack_redis(compose_model: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackRedis]:
    server = StackRedis(compose_model, tmp_path_factory.mktemp("redis"))
    try:
        server.wait_ready(TEST_SECRETS["REDIS_PASSWORD"])
        yield server
    finally:
        server.stop()


@pytest.fixture
def admin(stack_redis: StackRedis) -> Iterator[redis.Redis]:
    client = redis.Redis(port=stack_redis.port, password=TEST_SECRETS["REDIS_PASSWORD"])
    client.flushall()
    redis_command(client, "ACL", "LOG", "RESET")
    yield client
    client.close()


def monitor_url(stack_redis: StackRedis, model: dict[str, Any]) -> str:
    return stack_redis.url(service_environment(model, "monitor")["CONFIG_redis_url"])


def monitor_defaults() -> MonitorSettings:
    """The monitor's settings as compose runs it: its defaults (compose sets only addresses)."""
    return load_settings(environ={}, env_file=None)


def fill_replay(client: redis.Redis, settings: MonitorSettings) -> None:
    """What a hive leaves in Redis: transitions, the push counter, two agents' status keys."""
    client.lpush(settings.env_replay_key, *[bytes([index]) * 500 for index in range(10)])
    client.set(settings.env_push_counter_key, 25)
    for agent in ("a", "b"):
        client.set(f"borg:status:{settings.run_id}:{agent}", "{}", ex=30)
    client.set("borg:agent:borg-dqn:lease:0", 2)


def test_redis_gets_its_passwords_on_no_command_line(stack_redis: StackRedis) -> None:
    command_lines = [Path(f"/proc/{stack_redis.process.pid}/cmdline").read_bytes()]
    for child in Path(f"/proc/{stack_redis.process.pid}/task").iterdir():
        children = (child / "children").read_text().split()
        command_lines += [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in children]
    for line in command_lines:
        assert secrets_in(line.decode(errors="replace")) == set(), line


def wait_for_replica(replica: redis.Redis, key: str, length: int, timeout: float = 60.0) -> None:
    """Until the replica's link to its primary is up, `key` has `length` items there, and the
    append-only file it rewrites after a sync is written (until then it refuses to shut down)."""
    deadline = time.monotonic() + timeout
    while True:
        link = replica.info("replication").get("master_link_status")
        persistence = replica.info("persistence")
        rewriting = persistence["aof_rewrite_in_progress"] or persistence["aof_rewrite_scheduled"]
        if link == "up" and int(replica.llen(key)) == length and not rewriting:
            return
        assert time.monotonic() < deadline, f"replica: link {link}, {key} has {replica.llen(key)} of {length}"
        time.sleep(0.05)


def test_the_replica_override_replicates_with_the_stack_passwords_and_acl(
    compose_replica_model: dict[str, Any], tmp_path: Path
) -> None:
    password = TEST_SECRETS["REDIS_PASSWORD"]
    (tmp_path / "primary").mkdir()
    (tmp_path / "replica").mkdir()
    primary = StackRedis(compose_replica_model, tmp_path / "primary")
    replica_server: StackRedis | None = None
    try:
        primary.wait_ready(password)
        # The replica service's own command and environment, its primary on loopback.
        replica_server = StackRedis(
            compose_replica_model, tmp_path / "replica", "redis-replica", REDIS_REPLICA_OF=f"127.0.0.1 {primary.port}"
        )
        replica_server.wait_ready(password)
        writer = redis.Redis(port=primary.port, password=password)
        with writer.pipeline(transaction=True) as push:
            push.lpush("transitions", *[bytes([index]) * 530 for index in range(8)])
            push.incrby("transitions:pushed", 8)
            push.execute()
        replica = redis.Redis(port=replica_server.port, password=password)
        wait_for_replica(replica, "transitions", 8)
        assert int(replica.get("transitions:pushed") or 0) == 8
        with pytest.raises(redis.exceptions.ReadOnlyError):
            replica.lpush("transitions", b"x")
        # The monitor's read-only ACL user exists on the replica too.
        monitor_password = TEST_SECRETS["REDIS_MONITOR_PASSWORD"]
        monitor = redis.Redis(port=replica_server.port, username="monitor", password=monitor_password)
        assert int(monitor.llen("transitions")) == 8
        with pytest.raises(redis.exceptions.NoPermissionError):
            monitor.get("borg:agent:borg-dqn:lease:0")
        problem = redis_problem(f"redis://127.0.0.1:{replica_server.port}/0")
        assert problem is not None and "requires a password" in problem
        for client in (writer, replica, monitor):
            client.close()
    finally:
        if replica_server is not None:
            replica_server.stop()
        primary.stop()


def test_redis_refuses_a_client_without_the_password(stack_redis: StackRedis) -> None:
    problem = redis_problem(f"redis://127.0.0.1:{stack_redis.port}/0")
    assert problem is not None and "requires a password" in problem


def test_the_game_logs_in_with_the_url_compose_gives_it(
    stack_redis: StackRedis, admin: redis.Redis, compose_model: dict[str, Any]
) -> None:
    url = stack_redis.url(service_environment(compose_model, "game")["CONFIG_redis_url"])
    assert redis_problem(url) is None
    game = redis.Redis.from_url(url)
    game.lpush("transitions", b"x")
    assert int(admin.llen("transitions")) == 1
    game.close()


def test_the_monitor_reads_everything_it_needs_as_its_read_only_user(
    stack_redis: StackRedis, admin: redis.Redis, compose_model: dict[str, Any]
) -> None:
    settings = monitor_defaults()
    fill_replay(admin, settings)
    client = connect(monitor_url(stack_redis, compose_model))
    try:
        reading = RedisProbe(client, settings.env_replay_key, settings.env_push_counter_key, settings.run_id).read()
    finally:
        client.close()
    assert (reading.transition_count, reading.push_counter, reading.live_agents) == (10, 25, 2)
    assert reading.replay_bytes is not None and reading.replay_bytes >= 10 * 500
    assert reading.used_memory > 0 and reading.connected_clients >= 1
    assert redis_command(admin, "ACL", "LOG") == [], "the probe ran into no permission wall"


@pytest.mark.parametrize(
    "command",
    [
        ("LPUSH", "transitions:ALE/Pong-v5", "x"),
        ("SET", "transitions:pushed:ALE/Pong-v5", "0"),
        ("INCR", "transitions:pushed:ALE/Pong-v5"),
        ("LTRIM", "transitions:ALE/Pong-v5", "0", "0"),
        ("DEL", "transitions:ALE/Pong-v5"),
        ("FLUSHALL",),
        ("FLUSHDB",),
        ("GET", "borg:agent:borg-dqn:lease:0"),
        ("CONFIG", "GET", "requirepass"),
        ("ACL", "LIST"),
        ("SHUTDOWN",),
        ("EVAL", "return 1", "0"),
    ],
)
def test_the_monitor_user_may_not_write_or_administer(
    command: tuple[str, ...], stack_redis: StackRedis, admin: redis.Redis, compose_model: dict[str, Any]
) -> None:
    settings = monitor_defaults()
    fill_replay(admin, settings)
    client = redis.Redis.from_url(monitor_url(stack_redis, compose_model), driver_info=None)
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            redis_command(client, *command)
    finally:
        client.close()
    assert int(admin.llen(settings.env_replay_key)) == 10 and admin.get(settings.env_push_counter_key) == b"25"


def test_the_monitors_acl_allows_read_only_commands_on_its_keys_only(
    admin: redis.Redis, compose_model: dict[str, Any]
) -> None:
    _, _, rules = monitor_acl(compose_model)
    commands = [rule[1:] for rule in rules if rule.startswith("+")]
    others = [rule for rule in rules if not rule.startswith("+")]
    assert commands and all("@" not in command for command in commands), "commands by name, no category"
    assert others and all(rule.startswith("%R~") and rule != "%R~*" for rule in others), "read-only key patterns"
    for command in commands:
        (info,) = redis_command(admin, "COMMAND", "INFO", command)
        flags = {flag.decode() if isinstance(flag, bytes) else flag for flag in info[2]}
        assert "write" not in flags and "admin" not in flags, (command, flags)
    settings = monitor_defaults()
    patterns = [rule.removeprefix("%R~") for rule in others]
    for key in (settings.env_replay_key, settings.env_push_counter_key, f"borg:status:{settings.run_id}:x"):
        assert any(re.fullmatch(re.escape(p).replace(r"\*", ".*"), key) for p in patterns), key


def test_the_monitor_process_runs_as_the_read_only_user(
    stack_redis: StackRedis, admin: redis.Redis, compose_model: dict[str, Any], tmp_path: Path
) -> None:
    fill_replay(admin, monitor_defaults())
    environment = {key: value for key, value in os.environ.items() if not key.upper().startswith("CONFIG_")}
    environment.update({"CONFIG_redis_url": monitor_url(stack_redis, compose_model), "CONFIG_poll_interval": "0.2"})
    log = tmp_path / "monitor.log"
    with log.open("w") as output:
        monitor = subprocess.Popen(
            [sys.executable, "-m", "borg_monitor"], cwd=tmp_path, env=environment, stdout=output, stderr=output
        )
        try:
            deadline = time.monotonic() + 60
            while log.read_text().count("replay 10/") < 3:
                assert monitor.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        finally:
            monitor.send_signal(signal.SIGTERM)
            code = monitor.wait(timeout=30)
    text = log.read_text()
    assert code == 0, text
    assert "WARNING" not in text and "refused" not in text, text
    assert "2 agents" in text
    assert secrets_in(text) == set(), "the monitor logs its URL with the password masked"
    assert "redis://***@127.0.0.1" in text
    assert redis_command(admin, "ACL", "LOG") == []


def test_the_redis_healthcheck_logs_in_from_its_environment(
    stack_redis: StackRedis, compose_model: dict[str, Any]
) -> None:
    kind, check = compose_model["services"]["redis"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    command = shell_command(check).replace("redis-cli", f"redis-cli -p {stack_redis.port}")
    environment = {**os.environ, **stack_redis.environment}
    assert subprocess.run(["/bin/sh", "-c", command], env=environment, timeout=30, check=False).returncode == 0
    wrong = {**environment, "REDISCLI_AUTH": "not-the-password"}
    assert subprocess.run(["/bin/sh", "-c", command], env=wrong, timeout=30, check=False).returncode != 0


def test_redis_refuses_to_start_with_a_password_that_breaks_urls(compose_model: dict[str, Any], tmp_path: Path) -> None:
    server = StackRedis(compose_model, tmp_path, REDISCLI_AUTH="pass@word/1")
    output, _ = server.process.communicate(timeout=30)
    assert server.process.returncode == 1
    assert "may hold only letters, digits" in output
    assert "pass@word" not in output


# --------------------------------------------------------------------------- Elasticsearch


def test_setup_gives_kibana_and_logstash_the_logins_compose_gives_them(
    setup_requests: list[RecordedRequest], compose_model: dict[str, Any]
) -> None:
    elastic = ("elastic", TEST_SECRETS["ELASTIC_PASSWORD"])
    assert [request.basic_credentials() for request in setup_requests] == [elastic] * len(setup_requests)
    kibana = service_environment(compose_model, "kibana")
    assert kibana["ELASTICSEARCH_USERNAME"] == "kibana_system"
    password = setup_request(setup_requests, "POST", "/_security/user/kibana_system/_password").json()
    assert password == {"password": kibana["ELASTICSEARCH_PASSWORD"]}
    logstash = service_environment(compose_model, "logstash")
    user = setup_request(setup_requests, "PUT", f"/_security/user/{logstash['BORG_ELASTICSEARCH_USER']}").json()
    assert (user["password"], user["roles"]) == (logstash["BORG_ELASTICSEARCH_PASSWORD"], ["logstash_writer"])
    role = setup_request(setup_requests, "PUT", "/_security/role/logstash_writer").json()
    assert role == {
        "cluster": ["monitor"],
        "indices": [{"names": ["borg-*"], "privileges": ["create_index", "index"]}],
    }
    # Users before templates: Kibana and Logstash start once the whole one-shot succeeded.
    routes = [request.route for request in setup_requests]
    assert routes[:3] == [
        "/_security/user/kibana_system/_password",
        "/_security/role/logstash_writer",
        "/_security/user/logstash_writer",
    ]
    assert all(route.startswith("/_index_template/") for route in routes[3:]) and len(routes) > 3


def test_setup_escapes_passwords_for_json_and_curl(compose_model: dict[str, Any]) -> None:
    awkward = {
        "ELASTIC_PASSWORD": 'el"as\\tic pw',
        "KIBANA_SYSTEM_PASSWORD": 'ki"b\\',
        "LOGSTASH_WRITER_PASSWORD": "l'o g",
    }
    with stand_in() as server:
        result = run_elasticsearch_setup(server.url, compose_model, TEMPLATE_DIR, SETUP_RETRIES="0", **awkward)
    assert result.returncode == 0, result.stderr
    requests = server.requests
    assert {request.basic_credentials() for request in requests} == {("elastic", awkward["ELASTIC_PASSWORD"])}
    kibana = setup_request(requests, "POST", "/_security/user/kibana_system/_password").json()
    assert kibana["password"] == awkward["KIBANA_SYSTEM_PASSWORD"]
    logstash = setup_request(requests, "PUT", "/_security/user/logstash_writer").json()
    assert logstash["password"] == awkward["LOGSTASH_WRITER_PASSWORD"]


def test_setup_stops_at_a_refused_step_and_names_it(compose_model: dict[str, Any]) -> None:
    refusal = {
        "error": {
            "type": "security_exception",
            "reason": "action [cluster:admin/xpack/security/role/put] is unauthorized",
        }
    }
    with stand_in({"/_security/role/logstash_writer": (403, refusal)}) as server:
        result = run_elasticsearch_setup(server.url, compose_model, SETUP_RETRIES="0")
    assert result.returncode != 0
    assert "role logstash_writer failed" in result.stderr and "is unauthorized" in result.stderr
    assert [request.route for request in server.requests][-1] == "/_security/role/logstash_writer"


def test_setup_prints_no_password(
    compose_model: dict[str, Any], templates_installed: subprocess.CompletedProcess[str]
) -> None:
    with stand_in() as server:
        result = run_elasticsearch_setup(server.url, compose_model, SETUP_RETRIES="0")
    assert "logstash_writer" in result.stdout and "kibana_system" in result.stdout
    for output in (result, templates_installed):
        assert secrets_in(output.stdout + output.stderr) == set()


def test_setup_logs_in_to_the_real_node_and_is_refused_without_a_login(
    search_server: SearchServer, compose_model: dict[str, Any], templates_installed: subprocess.CompletedProcess[str]
) -> None:
    assert "template borg-training-log" in templates_installed.stdout
    anonymous = run_template_setup_as(search_server, compose_model, "")
    assert anonymous.returncode != 0 and "missing authentication credentials" in anonymous.stderr
    with pytest.raises(SearchRequestError) as error:
        es_request(search_server.url, "GET", "/_cluster/health")
    assert error.value.status == 401


def run_template_setup_as(
    server: SearchServer, model: dict[str, Any], password: str
) -> subprocess.CompletedProcess[str]:
    return run_elasticsearch_setup(
        server.url,
        model,
        ELASTIC_PASSWORD=password,
        KIBANA_SYSTEM_PASSWORD="",
        LOGSTASH_WRITER_PASSWORD="",
        SETUP_RETRIES="0",
    )


def test_setup_with_a_wrong_elastic_password_fails_saying_so(
    search_server: SearchServer, compose_model: dict[str, Any]
) -> None:
    wrong = "wrong-" + secrets.token_hex(8)
    result = run_elasticsearch_setup(search_server.url, compose_model, ELASTIC_PASSWORD=wrong, SETUP_RETRIES="0")
    assert result.returncode != 0
    assert "password of kibana_system failed" in result.stderr
    assert "unable to authenticate user [elastic]" in result.stderr
    assert wrong not in result.stdout + result.stderr and secrets_in(result.stdout + result.stderr) == set()


def test_logstash_writer_may_write_borg_indices_and_nothing_else(
    search_server: SearchServer, compose_model: dict[str, Any]
) -> None:
    """On the real node, as Logstash's user with the role setup.sh creates (see conftest.servers)."""
    logstash = service_environment(compose_model, "logstash")
    writer = (logstash["BORG_ELASTICSEARCH_USER"], logstash["BORG_ELASTICSEARCH_PASSWORD"])
    me = es_request(search_server.url, "GET", "/_security/_authenticate", auth=writer)
    assert me["roles"] == ["logstash_writer"]
    # What Logstash's elasticsearch output asks at start (its `GET /` version check needs
    # the same `monitor` privilege, but this node lacks the rest-root module that serves it).
    es_request(search_server.url, "GET", "/_license", auth=writer)
    es_request(search_server.url, "GET", "/_cluster/health", auth=writer)
    index = "borg-security-check-2026.01.01"
    try:
        # A new daily index, a document by id, the same id again (an overwrite), in bulk too.
        for _ in range(2):
            es_request(search_server.url, "PUT", f"/{index}/_doc/0-1-2", {"x": 1}, auth=writer)
        bulk = es_request(
            search_server.url, "POST", "/_bulk", [{"index": {"_index": index, "_id": "0-2-3"}}, {"x": 2}], auth=writer
        )
        assert bulk["errors"] is False, bulk
        refused = [
            ("PUT", "/other-index/_doc/1", {"x": 1}),
            ("GET", f"/{index}/_search", None),
            ("GET", f"/{index}/_doc/0-1-2", None),
            ("DELETE", f"/{index}/_doc/0-1-2", None),
            ("DELETE", f"/{index}", None),
            ("PUT", "/_index_template/borg-evil", {"index_patterns": ["borg-evil-*"]}),
            ("GET", "/_security/user", None),
            ("PUT", "/_cluster/settings", {"persistent": {"cluster.routing.allocation.enable": "none"}}),
        ]
        for method, path, body in refused:
            with pytest.raises(SearchRequestError) as error:
                es_request(search_server.url, method, path, body, auth=writer)
            assert error.value.status == 403, (method, path, error.value)
    finally:
        es_request(search_server.url, "DELETE", f"/{index}?ignore_unavailable=true", auth=search_server.auth)


def test_the_elasticsearch_healthcheck_logs_in_from_its_environment(
    search_server: SearchServer, compose_model: dict[str, Any]
) -> None:
    kind, check = compose_model["services"]["elasticsearch"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    command = shell_command(check).replace("http://localhost:9200", search_server.url)
    environment = {**os.environ, **service_environment(compose_model, "elasticsearch")}
    assert subprocess.run(["/bin/sh", "-c", command], env=environment, timeout=60, check=False).returncode == 0
    wrong = {**environment, "ELASTIC_PASSWORD": "not-the-password"}
    result = subprocess.run(
        ["/bin/sh", "-c", command], env=wrong, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0 and "401" in result.stderr


# --------------------------------------------------------------------------- Kafka and logs


def test_no_secret_or_url_in_kafka_messages_or_process_logs(stack_run: StackRun) -> None:
    """The stack run's agents and monitor logged in to Redis with compose's passwords."""
    for record in stack_run.records:
        message = json.loads(record.value)
        assert secrets_in(message) == set()
        assert "redis://" not in record.value.decode()
        names = {name.lower() for name in strings(list(message))}
        assert not {name for name in names if re.search(r"url|password|secret|token|key$", name)}
    for name, text in stack_run.process_logs.items():
        assert secrets_in(text) == set(), name
    assert "***@127.0.0.1" in stack_run.process_logs["monitor"]


def test_no_secret_reaches_the_images_or_git() -> None:
    """The images build from the repository root: .dockerignore excludes everything, then lets
    back in only what the Dockerfiles copy, never .env; git ignores .env."""
    ignored = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()]
    let_in = [line for line in ignored if line.startswith("!")]
    assert ignored.index("*") < ignored.index(let_in[0])
    assert not any(".env" in line for line in let_in)
    assert ".env" in (REPO_ROOT / ".gitignore").read_text().split()
