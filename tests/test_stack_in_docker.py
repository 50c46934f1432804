"""The stack as users run it: `docker compose up --scale game=2` on a real Docker engine.

`make test-docker` (as root, on Debian bookworm): installs Debian's Docker engine and starts
it (harness/docker/install-engine.sh), builds stand-ins of the base images from Debian
packages (harness/docker/build-stand-ins.sh; how they differ: harness/docker/README.md),
builds the game and monitor images with `docker compose build` and runs redis, kafka,
kafka-topics, two CPU game agents and the monitor (compose.cpu.yaml; Elasticsearch, Logstash
and Kibana have no stand-in). The tests run in file order on one stack: each checks one
behaviour of the running containers, later ones stop, restart and reconfigure it. At the
end the project is removed with its volumes and the engine is stopped if the test started it.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jsonschema
import pytest

from conftest import REPO_ROOT, SCHEMAS, KafkaRecord, consume_records, load_schema
from docker_stack import (
    AGENTS,
    BUILT,
    GAME_BUILD_DISK_GIB,
    HARNESS_DIR,
    Container,
    Stack,
    docker,
    require_disk_for_build,
    run_step,
    wait_for,
)

# The first test also installs the engine and builds every image (tens of minutes cold).
pytestmark = [pytest.mark.docker, pytest.mark.timeout(5400)]

RUN_ID = "borg-dqn"  # CONFIG_run_id's default: the status keys are borg:status:<run>:<agent>
# Small budgets for two agents on a shared CPU: learning starts within seconds, checkpoints
# come every few seconds, the monitor and status keys report every second.
COMMON = {
    "total_steps": "100000000",  # runs until stopped
    "learning_starts": "200",
    "eval_interval": "0",
    "train_log_interval": "20",
    "status_interval": "1",
    "poll_interval": "1",
    "replay_capacity": "20000",
}
CARTPOLE = {**COMMON, "env_id": "CartPole-v1", "mlp_hidden_sizes": "32,32", "checkpoint_interval": "2000"}
PONG = {**COMMON, "env_id": "ALE/Pong-v5", "checkpoint_interval": "1000"}
LEARNING_STARTS = int(COMMON["learning_starts"])

AGENT_START = re.compile(r"agent (\S+) on (\S+) \(.*starting at step (\d+)")
RESUMED = re.compile(r"resumed from (\S+) at step (\d+)")
FINAL_CHECKPOINT = re.compile(r"checkpoint written to (\S+) at step (\d+)")


@dataclass(frozen=True)
class AgentRun:
    """What a game container's last start logged: who it is, what it plays, where it began."""

    container: Container
    agent_id: str
    env_id: str
    start_step: int
    resumed_from: str | None


def last_start(container: Container) -> AgentRun | None:
    """The agent's last start in the container's logs (None: not started yet)."""
    logs = container.logs()
    this_run = logs[logs.rfind("settings: ") :]  # every start logs its settings first
    start = AGENT_START.search(this_run)
    if start is None:
        return None
    resumed = RESUMED.search(this_run)
    return AgentRun(
        container, start.group(1), start.group(2), int(start.group(3)), resumed.group(1) if resumed else None
    )


def assert_no_crash(stack: Stack) -> None:
    """Fail at once, with its logs, when an agent container restarted or exited."""
    for container in stack.containers("game"):
        crashed = container.restart_count > 0 or container.state["Status"] not in ("running", "created")
        assert not crashed, (
            f"{container.name} restarted {container.restart_count} times, now {container.state['Status']} "
            f"(exit {container.exit_code}):\n{container.logs()[-4000:]}"
        )


def started_agents(stack: Stack, env_id: str) -> list[AgentRun]:
    """Both agents' runs once both have started on `env_id` (fails on a crash)."""

    def started() -> list[AgentRun] | None:
        assert_no_crash(stack)
        runs = [last_start(container) for container in stack.containers("game", all_states=False)]
        ready = [run for run in runs if run is not None and run.env_id == env_id]
        return ready if len(ready) == AGENTS else None

    return wait_for(started, 600, f"{AGENTS} agents to start on {env_id}")


def agent_status(stack: Stack, agent_id: str) -> dict[str, Any] | None:
    """The agent's status key (its latest progress), or None."""
    raw = stack.redis().get(f"borg:status:{RUN_ID}:{agent_id}")
    return None if raw is None else dict(json.loads(raw))


def wait_until_learning(stack: Stack, runs: list[AgentRun]) -> None:
    """Wait until every agent has played well past learning_starts of this run (it trains)."""
    for run in runs:

        def learning(run: AgentRun = run) -> bool:
            assert_no_crash(stack)
            status = agent_status(stack, run.agent_id)
            return status is not None and int(status["step"]) >= run.start_step + LEARNING_STARTS + 100

        wait_for(learning, 900, f"{run.agent_id} to learn on {run.env_id}")


def counters(stack: Stack) -> tuple[int, int]:
    """The CartPole replay list's length and push counter (each environment has its own)."""
    client = stack.redis()
    env_id = CARTPOLE["env_id"]
    return int(client.llen(f"transitions:{env_id}")), int(client.get(f"transitions:pushed:{env_id}") or 0)


@dataclass
class History:
    """What earlier tests saw, for the later ones that compare."""

    events_since: float = 0.0
    agent_ids: frozenset[str] = frozenset()
    final_checkpoints: dict[str, str] | None = None
    volumes: frozenset[str] = frozenset()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def engine() -> Iterator[None]:
    """Debian's Docker engine, running; stopped at the end if this fixture started it."""
    run_step(["bash", str(HARNESS_DIR / "install-engine.sh")], "Docker engine", timeout=1200)
    try:
        yield
    finally:
        subprocess.run(["bash", str(HARNESS_DIR / "stop-engine.sh")], timeout=300, check=False)


@pytest.fixture(scope="module")
def history() -> History:
    """Shared between the ordered tests of this module."""
    return History()


@pytest.fixture(scope="module")
def stack(engine: None, history: History, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stack up with two CartPole agents; removed with its volumes at the end."""
    run_step(["bash", str(HARNESS_DIR / "build-stand-ins.sh")], "stand-in base images", timeout=2400)
    stack = Stack(tmp_path_factory.mktemp("stack"), CARTPOLE)
    try:
        require_disk_for_build(stack.image("game"), GAME_BUILD_DISK_GIB)
        for service in BUILT:
            run_step(stack.argv("build", service), f"image of {service}", timeout=3600)
        history.events_since = time.time()
        started = time.monotonic()
        stack.up()
        print(f"\n=== up (health gates passed, agents started): {time.monotonic() - started:.0f}s", flush=True)
        history.volumes = frozenset(stack.volumes())
        yield stack
    finally:
        logs = subprocess.run(stack.argv("logs", "--no-color", "--tail", "40"), capture_output=True, text=True)
        print(f"\n=== the last log lines of every service:\n{logs.stdout[-12000:]}", flush=True)
        subprocess.run(stack.argv("down", "--volumes", "--remove-orphans", "--timeout", "120"), timeout=600)


# --------------------------------------------------------------------------- the images


@pytest.mark.parametrize("service", BUILT)
def test_the_image_holds_exactly_the_pinned_packages(stack: Stack, service: str) -> None:
    image = stack.image(service)
    listing = (
        "import importlib.metadata as m, json; "
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    )
    installed = json.loads(docker("run", "--rm", "--entrypoint", "python", image, "-c", listing))
    pins = dict(
        line.split("==", 1) for line in (REPO_ROOT / "constraints.txt").read_text().splitlines() if "==" in line
    )
    normalise = {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pins.items()}
    unpinned = {
        name: version
        for name, version in installed.items()
        if not name.startswith("borg-") and normalise.get(re.sub(r"[-_.]+", "-", name).lower()) != version
    }
    assert not unpinned, f"{image}: packages not at their constraints.txt pin: {unpinned}"


# --------------------------------------------------------------------------- up


def test_the_health_gates_open_in_order(stack: Stack, history: History) -> None:
    out = docker(
        "events",
        "--since",
        f"{history.events_since:.3f}",
        "--until",
        f"{time.time():.3f}",
        "--filter",
        f"label=com.docker.compose.project={stack.project}",
        "--filter",
        "type=container",
        "--format",
        "{{json .}}",
    )
    events = [json.loads(line) for line in out.splitlines()]

    def times(service: str, action: str) -> list[int]:
        return [
            int(event["timeNano"])
            for event in events
            if event["Actor"]["Attributes"].get("com.docker.compose.service") == service
            and event["Action"].startswith(action)
        ]

    redis_healthy, kafka_healthy = (
        min(times("redis", "health_status: healthy")),
        min(times("kafka", "health_status: healthy")),
    )
    (topics_started,) = times("kafka-topics", "start")
    (topics_exited,) = times("kafka-topics", "die")
    assert kafka_healthy < topics_started, "kafka-topics ran before Kafka was healthy"
    topics = stack.containers("kafka-topics")
    assert [container.exit_code for container in topics] == [0]
    for service, count in (("game", AGENTS), ("monitor", 1)):
        starts = times(service, "start")
        assert len(starts) == count, f"{service}: {len(starts)} starts"
        assert min(starts) > max(redis_healthy, kafka_healthy, topics_exited), f"{service} started before its gates"


def test_two_agents_play_with_distinct_ids(stack: Stack, history: History) -> None:
    runs = started_agents(stack, CARTPOLE["env_id"])
    ids = {run.agent_id for run in runs}
    assert len(ids) == AGENTS, f"agent ids collide: {[run.agent_id for run in runs]}"
    for agent_id in ids:

        def reported(agent_id: str = agent_id) -> dict[str, Any] | None:
            return agent_status(stack, agent_id)

        wait_for(reported, 300, f"{agent_id}'s status in Redis")
    history.agent_ids = frozenset(ids)


def test_the_replay_list_and_the_push_counter_grow(stack: Stack) -> None:
    length, pushed = wait_for(lambda: counters(stack) if counters(stack)[1] > 0 else None, 300, "the first pushes")

    def grew() -> bool:
        now_length, now_pushed = counters(stack)
        return now_length > length and now_pushed > pushed

    wait_for(grew, 300, f"the replay list ({length}) and push counter ({pushed}) to grow")


def test_both_topics_receive_messages_valid_against_their_schemas(stack: Stack, history: History) -> None:
    topics = sorted(SCHEMAS)

    def from_both_agents() -> list[KafkaRecord] | None:
        records = consume_records(stack.kafka_bootstrap_servers, topics, dict.fromkeys(topics, 1), timeout=300)
        senders = {json.loads(record.value)["agent_id"] for record in records if record.topic == "training_log"}
        return records if senders >= history.agent_ids else None

    records = wait_for(from_both_agents, 300, f"training-log messages of {sorted(history.agent_ids)}")
    for topic in topics:
        validator = jsonschema.Draft202012Validator(load_schema(topic), format_checker=jsonschema.FormatChecker())
        messages = [json.loads(record.value) for record in records if record.topic == topic]
        assert messages, topic
        for message in messages:
            errors = [f"{error.json_path}: {error.message}" for error in validator.iter_errors(message)]
            assert not errors, f"{topic}: {message}: {errors}"


def test_the_monitor_counts_both_agents(stack: Stack) -> None:
    def counted_both() -> bool:
        records = consume_records(stack.kafka_bootstrap_servers, ["memory_monitoring"], {}, timeout=120)
        return bool(json.loads(records[-1].value)["live_agents"] == AGENTS)

    wait_for(counted_both, 300, f"a monitor reading with {AGENTS} live agents")


# --------------------------------------------------------------------------- stop, down, up


def test_stop_ends_the_agents_cleanly_with_final_checkpoints(stack: Stack, history: History) -> None:
    started = time.monotonic()
    stack.compose("stop", timeout=600)
    print(f"docker compose stop: {time.monotonic() - started:.0f}s")
    final: dict[str, str] = {}
    for container in stack.containers("game"):
        run = last_start(container)
        assert run is not None
        # 0, not 137: the agent finished within stop_grace_period, before a SIGKILL.
        assert container.exit_code == 0, f"{container.name} exited {container.exit_code}:\n{container.logs()[-3000:]}"
        checkpoints = FINAL_CHECKPOINT.findall(container.logs())
        assert checkpoints, f"{container.name} wrote no final checkpoint"
        final[run.agent_id] = checkpoints[-1][0]
    assert set(final) == history.agent_ids
    history.final_checkpoints = final


def test_down_then_up_resumes_the_agents_from_checkpoints(stack: Stack, history: History) -> None:
    stack.compose("down", timeout=600)
    assert stack.volumes() == history.volumes, "down removed a volume"
    stack.up()
    runs = started_agents(stack, CARTPOLE["env_id"])
    for run in runs:
        assert run.resumed_from is not None and run.start_step > 0, f"{run.agent_id} started afresh"


def test_down_then_up_keeps_each_agents_id_and_its_own_checkpoint(stack: Stack, history: History) -> None:
    runs = started_agents(stack, CARTPOLE["env_id"])
    assert {run.agent_id for run in runs} == history.agent_ids, "the agents came back under new ids"
    assert history.final_checkpoints is not None
    for run in runs:
        assert run.resumed_from == history.final_checkpoints[run.agent_id], (
            f"{run.agent_id} resumed from {run.resumed_from}, not its own final checkpoint"
        )


# --------------------------------------------------------------------------- switching environments


def switch_to(stack: Stack, config: dict[str, str]) -> None:
    """Edit .env's CONFIG_env_id and `up` again, as docs/full-stack.md tells users; then the
    agents must start on it and learn without a crash."""
    stack.write_env(config)
    stack.up()
    wait_until_learning(stack, started_agents(stack, config["env_id"]))


def test_switching_from_cartpole_to_pong_keeps_the_agents_running(stack: Stack) -> None:
    switch_to(stack, PONG)


def test_switching_back_to_cartpole_keeps_the_agents_running(stack: Stack) -> None:
    switch_to(stack, CARTPOLE)


def test_switching_environments_removes_no_volume(stack: Stack, history: History) -> None:
    assert stack.volumes() == history.volumes
    # One folder per environment in the model store: both games' checkpoints must still be there.
    listing = docker(
        "run",
        "--rm",
        "-v",
        f"{stack.project}_models:/models",
        "--entrypoint",
        "ls",
        stack.image("monitor"),
        "-R",
        "/models",
    )
    for folder in ("CartPole-v1", "ALE-Pong-v5"):
        assert f"/models/{folder}:" in listing, f"the model store lost {folder}:\n{listing}"
    assert listing.count("checkpoint-") >= 2, f"the model store lost its checkpoints:\n{listing}"


def test_down_with_volumes_removes_the_whole_project(stack: Stack) -> None:
    stack.compose("down", "--volumes", "--remove-orphans", timeout=600)
    assert stack.volumes() == set()
    assert not stack.containers("game")
