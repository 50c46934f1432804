"""Fixtures of the full-stack tests: the repository's stack files, the compose model as a real
compose implementation renders it, and real servers (Redis, Kafka, Elasticsearch) fed by the
real game and monitor processes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from borg_common.redis_keys import DEFAULT_PUSH_COUNTER_KEY, env_scoped_key
from borg_game.redis_server import EmbeddedRedis
from borg_harness.compose import compose_config
from borg_harness.kafka_broker import KafkaBroker
from borg_harness.search_server import SearchServer
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from dotenv import dotenv_values

from http_stand_in import RecordedRequest, stand_in
from logstash_config import IndexRequest, Pipeline, PipelineEmulator, parse_pipeline
from search_client import es_request

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO_ROOT / "compose.yaml"
COMPOSE_CPU_FILE = REPO_ROOT / "compose.cpu.yaml"
COMPOSE_PORTS_FILE = REPO_ROOT / "compose.ports.yaml"
COMPOSE_REPLICA_FILE = REPO_ROOT / "compose.replica.yaml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
PIPELINE_FILE = REPO_ROOT / "logstash" / "pipeline" / "borg.conf"
TEMPLATE_DIR = REPO_ROOT / "elasticsearch" / "templates"
DASHBOARD_FILE = REPO_ROOT / "kibana" / "dashboard.ndjson"
SCHEMA_DIR = REPO_ROOT / "schemas"

# Topic -> JSON Schema of its messages.
SCHEMAS = {"training_log": "training_log.schema.json", "memory_monitoring": "memory_monitoring.schema.json"}

# Two CartPole agents with a tiny budget: every record type (episode, train, eval) within seconds.
AGENTS = 2
AGENT_SETTINGS = {
    "env_id": "CartPole-v1",
    "total_steps": 6000,
    "learning_starts": 200,
    "epsilon_decay_steps": 3000,
    "train_log_interval": 20,
    "eval_interval": 2000,
    "eval_episodes": 3,
    "mlp_hidden_sizes": "32,32",
    "replay_capacity": 5000,
    "checkpoint_interval": 100_000,
    "tensorboard_dir": "",
    "model_store": "models",
    # Each agent its own run: a late starter must not resume from a finished agent's checkpoint.
    "resume": "false",
}
MONITOR_POLL_INTERVAL = 0.5

# The stack's secrets (.env.example leaves them empty), filled in for the tests: each one
# distinct and recognisable, so a test can tell which secret ended up where.
TEST_SECRETS = {
    "REDIS_PASSWORD": "test-redis-default-4d1f",
    "REDIS_MONITOR_PASSWORD": "test-redis-monitor-8a2c",
    "ELASTIC_PASSWORD": "test-elastic-superuser-5e7b",
    "KIBANA_PASSWORD": "test-kibana-system-2f9d",
    "LOGSTASH_PASSWORD": "test-logstash-writer-6c3a",
    "KIBANA_ENCRYPTION_KEY": "test-kibana-encryption-key-0123456789abcdef",
}


def env_example_values() -> dict[str, str]:
    """The keys .env.example sets (commented-out lines are defaults, not settings)."""
    return {key: value or "" for key, value in dotenv_values(ENV_EXAMPLE).items()}


def filled_env_text(secrets: dict[str, str] | None = None) -> str:
    """.env.example with its empty secret lines filled in (default: TEST_SECRETS), as a user
    or `make .env` fills them."""
    values = TEST_SECRETS if secrets is None else secrets
    text = ENV_EXAMPLE.read_text()
    for key, value in values.items():
        text, count = re.subn(rf"^{key}=$", f"{key}={value}", text, flags=re.MULTILINE)
        assert count == 1, f".env.example has no empty line {key}="
    return text


def load_saved_objects() -> list[dict[str, Any]]:
    """The objects of kibana/dashboard.ndjson, one per line."""
    return [json.loads(line) for line in DASHBOARD_FILE.read_text().splitlines() if line.strip()]


def load_templates() -> dict[str, dict[str, Any]]:
    """Index template name (file stem) -> template body."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(TEMPLATE_DIR.glob("*.json"))}


def load_schema(topic: str) -> dict[str, Any]:
    """The JSON Schema of a topic's messages."""
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / SCHEMAS[topic]).read_text())
    return schema


# --------------------------------------------------------------------------- compose


def compose_project(directory: Path, env_text: str) -> Path:
    """A project directory that looks like the repository with `env_text` as its .env.

    compose resolves `env_file: .env` and the build and bind paths against the project
    directory, and the developer's own .env must neither be needed nor read: so the
    repository's entries are symlinked into a fresh directory beside a .env of our own.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for entry in REPO_ROOT.iterdir():
        if entry.name not in (".env", ".git"):
            (directory / entry.name).symlink_to(entry)
    (directory / ".env").write_text(env_text)
    return directory


def render_compose(directory: Path, files: list[str], env_text: str | None = None) -> dict[str, Any]:
    """`compose config` of the repository's compose files with `env_text` as .env (default:
    .env.example with TEST_SECRETS filled in)."""
    project = compose_project(directory, filled_env_text() if env_text is None else env_text)
    return compose_config(project, project / ".env", [project / name for name in files])


def service_environment(model: dict[str, Any], service: str) -> dict[str, str]:
    """A service's rendered environment (a value-less entry reads as empty)."""
    return {key: value or "" for key, value in model["services"][service].get("environment", {}).items()}


@pytest.fixture(scope="session")
def compose_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """compose.yaml as compose renders it with .env.example (TEST_SECRETS filled in) as .env."""
    return render_compose(tmp_path_factory.mktemp("compose"), ["compose.yaml"])


@pytest.fixture(scope="session")
def compose_cpu_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """compose.yaml with the CPU override."""
    return render_compose(tmp_path_factory.mktemp("compose-cpu"), ["compose.yaml", "compose.cpu.yaml"])


@pytest.fixture(scope="session")
def compose_replica_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """compose.yaml with the Redis read replica override."""
    return render_compose(tmp_path_factory.mktemp("compose-replica"), ["compose.yaml", "compose.replica.yaml"])


# --------------------------------------------------------------------------- Logstash


@pytest.fixture(scope="session")
def pipeline() -> Pipeline:
    """logstash/pipeline/borg.conf, parsed."""
    return parse_pipeline(PIPELINE_FILE.read_text())


# --------------------------------------------------------------------------- servers


@pytest.fixture(scope="session")
def setup_requests(compose_model: dict[str, Any]) -> list[RecordedRequest]:
    """What elasticsearch/setup.sh, with the environment compose gives it, asks of
    Elasticsearch (answered by a stand-in that accepts everything)."""
    with stand_in() as server:
        result = run_elasticsearch_setup(server.url, compose_model, SETUP_RETRIES="0")
    assert result.returncode == 0, result.stderr
    return server.requests


def setup_request(requests: list[RecordedRequest], method: str, route: str) -> RecordedRequest:
    """The one request of setup.sh to `route`."""
    (request,) = [request for request in requests if (request.method, request.route) == (method, route)]
    return request


@pytest.fixture(scope="session")
def servers(
    tmp_path_factory: pytest.TempPathFactory,
    pipeline: Pipeline,
    compose_model: dict[str, Any],
    setup_requests: list[RecordedRequest],
) -> Iterator[tuple[SearchServer, StackRun]]:
    """A real Elasticsearch node with security on, and the messages of a real run
    (`stack_run`): the node boots in the background while the agents play, which saves most
    of its start time.

    `elastic`'s password is compose's ELASTIC_PASSWORD. Logstash's user is there with its
    compose password and exactly the role setup.sh creates: as a file-realm user, because
    this node cannot store API-made users (harness SearchServer: no analysis-common module
    for the .security index), so setup.sh's user steps are checked against a stand-in.
    """
    logstash = service_environment(compose_model, "logstash")
    role = setup_request(setup_requests, "PUT", "/_security/role/logstash_writer").json()
    server = SearchServer(
        elastic_password=service_environment(compose_model, "elasticsearch")["ELASTIC_PASSWORD"],
        users={logstash["BORG_ELASTICSEARCH_USER"]: (logstash["BORG_ELASTICSEARCH_PASSWORD"], ["logstash_writer"])},
        roles={"logstash_writer": role},
    )
    with ThreadPoolExecutor(max_workers=1) as pool:
        starting = pool.submit(server.start)
        try:
            run = produce_stack_messages(tmp_path_factory.mktemp("stack"), pipeline, compose_model)
            starting.result()
            yield server, run
        finally:
            wait([starting])
            server.stop()


@pytest.fixture(scope="session")
def search_server(servers: tuple[SearchServer, StackRun]) -> SearchServer:
    """A real Elasticsearch node (the harness's integ-test distribution), security on:
    `search_server.auth` is the `elastic` superuser's login."""
    return servers[0]


@pytest.fixture(scope="session")
def stack_run(servers: tuple[SearchServer, StackRun]) -> StackRun:
    """What two real agents and the real monitor produced to a real Kafka broker."""
    return servers[1]


def run_elasticsearch_setup(
    url: str, model: dict[str, Any], template_dir: Path = TEMPLATE_DIR, **overrides: str
) -> subprocess.CompletedProcess[str]:
    """Run elasticsearch/setup.sh, the script compose's elasticsearch-setup runs, with the
    environment compose gives it (its credentials), pointed at `url` and `template_dir`."""
    environment = {
        **os.environ,
        **service_environment(model, "elasticsearch-setup"),
        "ELASTICSEARCH_URL": url,
        "TEMPLATE_DIR": str(template_dir),
        **overrides,
    }
    return subprocess.run(
        ["bash", str(REPO_ROOT / "elasticsearch" / "setup.sh")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run_template_setup(
    url: str, model: dict[str, Any], template_dir: Path = TEMPLATE_DIR
) -> subprocess.CompletedProcess[str]:
    """setup.sh on the real node, logged in as `elastic` as compose has it, its user steps
    left out (the node cannot store API-made users: see `servers`)."""
    return run_elasticsearch_setup(url, model, template_dir, KIBANA_SYSTEM_PASSWORD="", LOGSTASH_WRITER_PASSWORD="")


@pytest.fixture(scope="session")
def templates_installed(search_server: SearchServer, compose_model: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """The index templates, installed by the setup script itself."""
    result = run_template_setup(search_server.url, compose_model)
    assert result.returncode == 0, result.stderr
    return result


@dataclass(frozen=True)
class KafkaRecord:
    """One message as Logstash's kafka input reads it."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    value: bytes


@dataclass(frozen=True)
class StackRun:
    """What the real game agents and monitor produced to Kafka in one run, and their logs
    (console output; `agent_log_lines`: the agents' training-log files)."""

    records: list[KafkaRecord]
    agent_log_lines: list[dict[str, Any]]
    process_logs: dict[str, str]

    def messages(self, topic: str) -> list[dict[str, Any]]:
        """The decoded messages of one topic."""
        return [json.loads(record.value) for record in self.records if record.topic == topic]


def _process_environment(**settings: object) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if not key.upper().startswith("CONFIG_")}
    environment.update({f"CONFIG_{key}": str(value) for key, value in settings.items()})
    environment["PYTHONUNBUFFERED"] = "1"
    return environment


def consume_records(
    bootstrap_servers: str,
    topics: list[str],
    minimum: dict[str, int],
    timeout: float,
    until: Callable[[list[KafkaRecord]], bool] | None = None,
) -> list[KafkaRecord]:
    """Every message of `topics` from the beginning, read until the reader has caught up with
    the end of every partition, at least `minimum[topic]` messages of each topic were read, and
    `until` (if given) holds for the messages read.

    "Caught up" is measured against the broker's high watermarks, asked again each time the
    reader reaches the last ones it knew. End-of-partition events would not do: librdkafka
    emits one only after an empty fetch, and a producer that writes more often than the fetch
    wait (500 ms) leaves no fetch empty, so a reader of a running monitor might never see one.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"stack-test-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "log_level": 3,
        }
    )
    deadline = time.monotonic() + timeout
    records: list[KafkaRecord] = []
    try:
        partitions = _topic_partitions(consumer, topics, deadline)
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING) for topic, partition in partitions])
        first_and_next = {key: _watermarks(consumer, key) for key in partitions}
        next_offsets = {key: first for key, (first, _) in first_and_next.items()}
        known_ends = {key: end for key, (_, end) in first_and_next.items()}
        while time.monotonic() < deadline:
            if all(next_offsets[key] >= known_ends[key] for key in partitions):
                counts = {topic: sum(record.topic == topic for record in records) for topic in topics}
                if all(counts[t] >= minimum.get(t, 1) for t in topics) and (until is None or until(records)):
                    return records
                known_ends = {key: _watermarks(consumer, key)[1] for key in partitions}
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            assert error is None, error
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            value, (_, timestamp) = message.value(), message.timestamp()
            assert topic is not None and partition is not None and offset is not None and value is not None
            records.append(KafkaRecord(topic, partition, offset, timestamp, value))
            next_offsets[topic, partition] = offset + 1
        raise AssertionError(f"consuming {topics} timed out after {timeout}s; read {len(records)} messages")
    finally:
        consumer.close()


def _topic_partitions(consumer: Consumer, topics: list[str], deadline: float) -> list[tuple[str, int]]:
    """Every (topic, partition) of `topics`, waiting for topics not created yet."""
    while True:
        metadata = consumer.list_topics(timeout=10).topics
        missing = [topic for topic in topics if topic not in metadata or not metadata[topic].partitions]
        if not missing:
            return [(topic, partition) for topic in topics for partition in sorted(metadata[topic].partitions)]
        assert time.monotonic() < deadline, f"topics {missing} do not exist"
        time.sleep(0.5)


def _watermarks(consumer: Consumer, key: tuple[str, int]) -> tuple[int, int]:
    """The partition's (first, next) offsets as the broker has them now."""
    low, high = consumer.get_watermark_offsets(TopicPartition(*key), timeout=10, cached=False)
    return int(low), int(high)


def monitor_acl(model: dict[str, Any]) -> tuple[str, str, list[str]]:
    """The monitor's Redis login as compose sets it up: (user, password, ACL rules)."""
    url = urlsplit(service_environment(model, "monitor")["CONFIG_redis_url"])
    assert url.username and url.password, "the monitor logs in to Redis with a user and a password"
    return url.username, url.password, service_environment(model, "redis")["REDIS_MONITOR_ACL"].split()


def redis_command(client: redis.Redis, *args: str | bytes | int) -> Any:
    """One raw Redis command (ACL, COMMAND INFO, ...: what redis-py has no typed method for)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def add_monitor_user(client: redis.Redis, model: dict[str, Any]) -> str:
    """Make the monitor's read-only ACL user with compose's exact rules; returns its redis:// URL."""
    user, password, rules = monitor_acl(model)
    redis_command(client, "ACL", "SETUSER", user, "reset", "on", f">{password}", *rules)
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{user}:{password}@{kwargs['host']}:{kwargs['port']}/0"


def produce_stack_messages(workdir: Path, pipeline: Pipeline, model: dict[str, Any]) -> StackRun:
    """Run two real agents (`python -m borg_game`) and the real monitor (`python -m borg_monitor`)
    on a real Redis with compose's passwords (the monitor as its read-only ACL user), producing
    to a real Kafka broker with their default topics; read back every message of the topics
    the pipeline consumes."""
    (kafka_input,) = (plugin for _, plugin in pipeline.plugins("input") if plugin.name == "kafka")
    topics = [str(topic) for topic in kafka_input.setting("topics")]
    redis_password = urlsplit(service_environment(model, "game")["CONFIG_redis_url"]).password
    with EmbeddedRedis(password=redis_password) as redis_server, KafkaBroker() as broker:
        # Created as compose's kafka-topics one-shot does: the broker refuses auto-creation there.
        broker.create_topics(topics)
        admin = redis.Redis.from_url(redis_server.url)
        monitor_url = add_monitor_user(admin, model)
        shared = {"redis_url": redis_server.url, "kafka_bootstrap_servers": broker.bootstrap_servers}
        monitor_log = (workdir / "monitor.log").open("w")
        monitor = subprocess.Popen(
            [sys.executable, "-m", "borg_monitor"],
            cwd=workdir,
            env=_process_environment(
                **{**shared, "redis_url": monitor_url},
                poll_interval=MONITOR_POLL_INTERVAL,
                # the replay list is per environment: the monitor watches the agents' (compose
                # gives both services the same .env)
                env_id=AGENT_SETTINGS["env_id"],
                replay_capacity=AGENT_SETTINGS["replay_capacity"],
            ),
            stdout=monitor_log,
            stderr=subprocess.STDOUT,
        )
        agents = []
        for index in range(AGENTS):
            log = (workdir / f"agent{index}.log").open("w")
            settings = {**AGENT_SETTINGS, **shared, "training_log_file": workdir / f"agent{index}.jsonl"}
            agents.append(
                subprocess.Popen(
                    [sys.executable, "-m", "borg_game"],
                    cwd=workdir,
                    env=_process_environment(**settings),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        try:
            codes = [agent.wait(timeout=600) for agent in agents]
            assert codes == [0] * AGENTS, [(workdir / f"agent{i}.log").read_text()[-3000:] for i in range(AGENTS)]
            # Wait for the monitor's reading of the final state: the push counter the agents left.
            counter_key = env_scoped_key(DEFAULT_PUSH_COUNTER_KEY, str(AGENT_SETTINGS["env_id"]))
            final_pushes = int(admin.get(counter_key) or 0)
            counters_read: list[int] = []

            def final_reading(read: list[KafkaRecord]) -> bool:
                counters_read[:] = [json.loads(record.value)["push_counter"] for record in read]
                return final_pushes in counters_read

            try:
                consume_records(broker.bootstrap_servers, ["memory_monitoring"], {}, timeout=120, until=final_reading)
            except AssertionError as error:
                raise AssertionError(
                    f"{error}: none with the final push counter {final_pushes} (the last ones: {counters_read[-5:]});"
                    f" monitor log: {(workdir / 'monitor.log').read_text()[-2000:]}"
                ) from error
        finally:
            for process in (*agents, monitor):
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            monitor_code = monitor.wait(timeout=60)
            monitor_log.close()
            admin.close()
        assert monitor_code == 0, (workdir / "monitor.log").read_text()[-3000:]
        agent_log_lines = [
            json.loads(line)
            for index in range(AGENTS)
            for line in (workdir / f"agent{index}.jsonl").read_text().splitlines()
        ]
        records = consume_records(broker.bootstrap_servers, topics, {"training_log": len(agent_log_lines)}, timeout=60)
    shutil.rmtree(workdir / "models", ignore_errors=True)
    process_logs = {path.stem: path.read_text() for path in sorted(workdir.glob("*.log"))}
    return StackRun(records, agent_log_lines, process_logs)


@dataclass(frozen=True)
class IndexedStack:
    """The run's messages, indexed into Elasticsearch as the Logstash pipeline would."""

    requests: list[tuple[KafkaRecord, IndexRequest]]
    bulk_response: dict[str, Any]

    def documents(self, index_pattern: str) -> list[dict[str, Any]]:
        """The documents sent to indices matching `<prefix>*`."""
        prefix = index_pattern.rstrip("*")
        return [request.document for _, request in self.requests if request.index.startswith(prefix)]


@pytest.fixture(scope="session")
def indexed_stack(
    search_server: SearchServer,
    templates_installed: subprocess.CompletedProcess[str],
    stack_run: StackRun,
    pipeline: Pipeline,
    compose_model: dict[str, Any],
) -> IndexedStack:
    """Every Kafka message of the run, through the emulated pipeline, into the real node,
    sent as the pipeline's user (logstash_writer, with the environment compose gives Logstash):
    its role must be enough for everything Logstash writes."""
    emulator = PipelineEmulator(pipeline, environ=service_environment(compose_model, "logstash"))
    requests = [
        (record, request)
        for record in stack_run.records
        for request in emulator.process(record.topic, record.partition, record.offset, record.timestamp, record.value)
    ]
    (credentials,) = {request.credentials for _, request in requests}
    assert credentials is not None, "the pipeline's outputs log in to Elasticsearch"
    bulk: list[Any] = []
    for _, request in requests:
        action: dict[str, Any] = {"_index": request.index}
        if request.document_id is not None:
            action["_id"] = request.document_id
        bulk += [{"index": action}, request.document]
    response: dict[str, Any] = es_request(search_server.url, "POST", "/_bulk?refresh=true", bulk, auth=credentials)
    return IndexedStack(requests, response)
