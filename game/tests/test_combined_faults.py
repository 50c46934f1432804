"""Redis and Kafka down together, under a running hive: real servers, real processes.

Two CartPole agents (`python -m borg_game`) and the memory monitor (`python -m borg_monitor`)
run on a real Redis (password, append-only file) and a real Kafka broker. Mid-run both
servers stop, stay down while each agent plays 3,000 more steps, and come back on the same
ports with the same data. Nothing may crash, play must go on while both are down, pushes must resume, every
training-log record each agent wrote to its JSON-lines file must reach Kafka exactly once,
and the monitor must publish again. The counts are printed (`pytest -s`).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import redis
from borg_common.redis_keys import DEFAULT_PUSH_COUNTER_KEY, env_scoped_key
from borg_harness.kafka_broker import KafkaBroker
from confluent_kafka import Consumer, KafkaError

from borg_game.redis_server import EmbeddedRedis
from tests.conftest import AgentProcess, agent_environment, spawn_agent
from tests.test_faults import last_agent_step

ENV_ID = "CartPole-v1"
AGENTS = ("agent-a", "agent-b")
TOPICS = ("training_log", "memory_monitoring")
OUTAGE_STEPS = 3_000  # each agent plays this many steps while Redis and Kafka are down
PASSWORD = "combined-fault-secret"


def epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    # A line being written while we read is skipped: it is read complete next time.
    records = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def wait_for(condition: Callable[[], bool], timeout: float, what: str, alive: list[subprocess.Popen[str]]) -> None:
    """Poll `condition` until it holds; fail on timeout or when a process died meanwhile."""
    deadline = time.monotonic() + timeout
    while not condition():
        dead = [process.args for process in alive if process.poll() is not None]
        assert not dead, f"died while waiting for {what}: {dead}"
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(0.25)


def stopped(process: subprocess.Popen[str]) -> int:
    """The exit code of a process sent SIGTERM; killed (and failing the test) if it hangs."""
    try:
        return process.wait(timeout=90)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return -9


class OutputDrain:
    """Reads a process's piped output on a thread, so that a full pipe never stalls it."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._process = process
        self._thread: threading.Thread | None = None
        if isinstance(process, AgentProcess):
            return  # it writes to a file already
        assert process.stdout is not None
        stream = process.stdout
        self._thread = threading.Thread(target=lambda: self.lines.extend(stream), daemon=True)
        self._thread.start()

    def text(self) -> str:
        if isinstance(self._process, AgentProcess):
            return self._process.output()
        assert self._thread is not None
        self._thread.join(timeout=30)
        return "".join(self.lines)


def consume(bootstrap_servers: str, enough: Callable[[dict[str, list[dict[str, Any]]]], bool]) -> dict[str, Any]:
    """Every message of TOPICS from the beginning, until `enough(messages by topic)` or 180 s."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"combined-faults-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "log_level": 3,
        }
    )
    consumer.subscribe(list(TOPICS))
    messages: dict[str, list[dict[str, Any]]] = {topic: [] for topic in TOPICS}
    deadline = time.monotonic() + 180
    try:
        while not enough(messages) and time.monotonic() < deadline:
            for message in consumer.consume(1_000, timeout=0.5):
                error = message.error()
                if error is not None:
                    assert error.code() == KafkaError._PARTITION_EOF, error
                    continue
                topic, value = message.topic(), message.value()
                assert topic is not None and value is not None
                messages[topic].append(json.loads(value))
    finally:
        consumer.close()
    return messages


def test_the_hive_rides_out_redis_and_kafka_down_together(tmp_path: Path) -> None:
    server = EmbeddedRedis(data_dir=tmp_path / "redis", password=PASSWORD, persistence=True).start()
    broker = KafkaBroker()
    try:
        run_the_outage(tmp_path, server, broker)
    finally:
        broker.close()
        server.stop()


def run_the_outage(tmp_path: Path, server: EmbeddedRedis, broker: KafkaBroker) -> None:
    processes: list[subprocess.Popen[str]] = []
    drains: dict[str, OutputDrain] = {}
    try:
        broker.start()
        broker.create_topics(TOPICS)
        shared = {
            "redis_url": server.url,
            "kafka_bootstrap_servers": broker.bootstrap_servers,
            "run_id": "combined",
            "env_id": ENV_ID,  # the monitor reads this environment's replay keys too
        }
        for index, name in enumerate(AGENTS):
            agent = spawn_agent(
                tmp_path,
                **shared,
                agent_index=index,
                agent_id=name,
                mlp_hidden_sizes="32",
                total_steps=100_000_000,  # runs until stopped
                learning_starts=300,
                eval_interval=0,
                checkpoint_interval=10_000_000,
                resume="false",
                model_store=tmp_path / "models",
                tensorboard_dir="",
                training_log_file=tmp_path / f"{name}.jsonl",
            )
            processes.append(agent)
            drains[name] = OutputDrain(agent)
        monitor = subprocess.Popen(
            [sys.executable, "-m", "borg_monitor"],
            cwd=tmp_path,
            env=agent_environment(**shared, poll_interval=0.5),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        processes.append(monitor)
        drains["monitor"] = OutputDrain(monitor)
        logs = {name: tmp_path / f"{name}.jsonl" for name in AGENTS}
        client = redis.Redis.from_url(server.url)

        def pushed() -> int:
            return int(client.get(env_scoped_key(DEFAULT_PUSH_COUNTER_KEY, ENV_ID)) or 0)

        # Warm-up: both agents play, learn and push; then a stretch with everything up.
        wait_for(lambda: all(len(read_jsonl(log)) > 30 for log in logs.values()), 300, "the agents to play", processes)
        wait_for(lambda: pushed() > 1_000, 180, "pushes", processes)

        # The outage: both servers stop at once (Kafka's orderly shutdown takes seconds; Redis
        # saves its append-only file and exits at once).
        broker_stopping = threading.Thread(target=broker.stop)
        broker_stopping.start()
        pushed_before = pushed()
        server.stop()
        client.close()
        broker_stopping.join(timeout=60)
        assert not broker.is_running(), "the broker did not stop"
        down_started = time.time()
        steps_at_stop = {name: last_agent_step(log) for name, log in logs.items()}
        # Play goes on while both are down: the event the outage waits for is each agent's
        # OUTAGE_STEPS more steps (a held-back agent times out here).
        wait_for(
            lambda: all(last_agent_step(logs[name]) >= steps_at_stop[name] + OUTAGE_STEPS for name in AGENTS),
            300,
            f"{OUTAGE_STEPS} steps of each agent with Redis and Kafka down",
            processes,
        )
        down_ended = time.time()
        assert all(process.poll() is None for process in processes), "a process died during the outage"
        server.start()
        client = redis.Redis.from_url(server.url)
        pushed_after_restart = pushed()  # what the append-only file kept; agents reconnect within seconds
        broker.start()  # same port, same data
        restarted = time.time()

        wait_for(lambda: pushed() > pushed_after_restart + 500, 240, "pushes to resume", processes)
        pushed_later = pushed()
        # A monitor reading taken after the restart, through the restored broker.
        consume(
            broker.bootstrap_servers,
            lambda messages: any(
                epoch(message["timestamp"]) > restarted and message["push_counter"] > pushed_after_restart
                for message in messages["memory_monitoring"]
            ),
        )
        client.close()
        assert all(process.poll() is None for process in processes), "a process died after the outage"
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = [stopped(process) for process in processes]
        outputs = {name: drain.text() for name, drain in drains.items()}

    assert codes == [0] * len(processes), {name: text[-2_000:] for name, text in outputs.items()}
    for name, text in outputs.items():
        assert "Traceback" not in text, f"{name}:\n{text[-3_000:]}"
        assert PASSWORD not in text, name
    assert "Redis readable again" in outputs["monitor"], outputs["monitor"][-3_000:]

    # Everything each agent logged to its file reached Kafka, exactly once.
    logged = {name: read_jsonl(logs[name]) for name in AGENTS}
    assert {record["agent_id"] for records in logged.values() for record in records} == set(AGENTS)

    def delivered_everything(messages: dict[str, list[dict[str, Any]]]) -> bool:
        counts = Counter(message["agent_id"] for message in messages["training_log"])
        return all(counts[name] >= len(logged[name]) for name in AGENTS)

    messages = consume(broker.bootstrap_servers, delivered_everything)
    delivered = {
        name: [message for message in messages["training_log"] if message["agent_id"] == name] for name in AGENTS
    }
    monitor_after = [message for message in messages["memory_monitoring"] if epoch(message["timestamp"]) > restarted]
    monitor_before = [
        message for message in messages["memory_monitoring"] if epoch(message["timestamp"]) < down_started
    ]

    for name in AGENTS:
        print(
            f"{name}: logged {len(logged[name])} training-log records, Kafka delivered {len(delivered[name])}; "
            f"step {steps_at_stop[name]} when both servers stopped"
        )
    print(
        f"push counter: {pushed_before} before the outage, {pushed_after_restart} right after Redis's restart "
        f"(persisted), {pushed_later} once Kafka was back too; "
        f"monitor messages: {len(monitor_before)} before the outage, {len(monitor_after)} after the restart "
        f"(outage {down_ended - down_started:.1f}s, Kafka back {restarted - down_ended:.1f}s later)"
    )
    for name in AGENTS:
        # Field for field: none lost, none twice (the idempotent producer's retries).
        assert sorted(map(json.dumps, delivered[name])) == sorted(map(json.dumps, logged[name])), name
    assert pushed_after_restart >= pushed_before, "the replay memory did not survive the restart"
    assert pushed_later > pushed_after_restart
    assert monitor_before, "the monitor published before the outage"
    assert monitor_after, "the monitor did not publish after the restart"
    assert max(message["push_counter"] for message in monitor_after) > pushed_after_restart
