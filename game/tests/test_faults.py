"""Faults survived against real servers: Redis restarts, Redis OOM, kills mid-checkpoint, auth."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis
import torch
from borg_common.redis_keys import DEFAULT_PUSH_COUNTER_KEY, DEFAULT_REPLAY_KEY, env_scoped_key

from borg_game.checkpoint import env_model_store, list_checkpoints, load_newest
from borg_game.redis_server import EmbeddedRedis
from tests.conftest import agent_environment, spawn_agent

QUICK_CARTPOLE = {
    "env_id": "CartPole-v1",
    "agent_index": 0,
    "agent_id": "a0",
    "learning_starts": 300,
    "eval_interval": 0,
    "mlp_hidden_sizes": "32",
    "tensorboard_dir": "",
    "training_log_file": "log.jsonl",
}
# The agents play CartPole: its replay memory has keys of its own (borg_common.redis_keys).
REPLAY_KEY = env_scoped_key(DEFAULT_REPLAY_KEY, "CartPole-v1")
PUSH_COUNTER_KEY = env_scoped_key(DEFAULT_PUSH_COUNTER_KEY, "CartPole-v1")


def last_agent_step(log: Path) -> int:
    """The newest agent step an agent's JSON-lines log has recorded (0 before its first record)."""
    lines = log.read_text().splitlines() if log.exists() else []
    steps = []
    for line in lines[-50:]:
        try:
            steps.append(int(json.loads(line)["agent_step"]))
        except json.JSONDecodeError:  # a line being written: read complete next time
            continue
    return max(steps, default=0)


def wait_for_step(log: Path, step: int, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while last_agent_step(log) < step:
        assert time.monotonic() < deadline, f"agent did not reach step {step}"
        time.sleep(0.1)


def stop_agent(agent: subprocess.Popen[str]) -> str:
    agent.send_signal(signal.SIGTERM)
    output, _ = agent.communicate(timeout=120)
    assert agent.returncode == 0, output
    return output


def test_agent_survives_a_redis_restart_and_the_memory_persists(tmp_path: Path) -> None:
    server = EmbeddedRedis(data_dir=tmp_path / "redis", persistence=True).start()
    agent = spawn_agent(tmp_path, redis_url=server.url, total_steps=10_000_000, **QUICK_CARTPOLE)
    log = tmp_path / "log.jsonl"
    try:
        wait_for_step(log, 3000)
        server.stop()  # SIGTERM: Redis writes its AOF and exits
        step_at_stop = last_agent_step(log)
        # Play goes on without Redis: the agent plays 2,000 more steps while it is down.
        wait_for_step(log, step_at_stop + 2000)
        assert agent.poll() is None, "agent died with Redis"
        server.start()
        client = redis.Redis.from_url(server.url)
        count_after_restart = int(client.llen(REPLAY_KEY))
        pushed_after_restart = int(client.get(PUSH_COUNTER_KEY) or 0)
        deadline = time.monotonic() + 180  # the writer's retry backoff is at most 5 s
        pushed_later = pushed_after_restart
        while pushed_later <= pushed_after_restart and time.monotonic() < deadline:
            time.sleep(0.5)
            pushed_later = int(client.get(PUSH_COUNTER_KEY) or 0)
        output = stop_agent(agent)
    finally:
        if agent.poll() is None:
            agent.kill()
        server.stop()
    print(f"Redis stopped at agent step {step_at_stop}; list after restart {count_after_restart}")
    assert count_after_restart >= 3000, "the shared memory did not survive the restart"
    assert count_after_restart == pushed_after_restart
    assert pushed_later > pushed_after_restart, "pushing did not resume:\n" + output[-2000:]
    assert "not pull from Redis" in output or "push of" in output  # the outage was logged
    assert "Traceback" not in output


def test_redis_out_of_memory_is_reported_and_pushing_recovers(tmp_path: Path) -> None:
    with EmbeddedRedis(maxmemory="3mb") as server:
        agent = spawn_agent(tmp_path, redis_url=server.url, total_steps=10_000_000, **QUICK_CARTPOLE)
        log = tmp_path / "log.jsonl"
        client = redis.Redis.from_url(server.url)
        try:
            # Wait until Redis has refused pushes for being out of memory (its error statistics say):
            # ~20k CartPole transitions after the agent's start-up, minutes on a loaded machine.
            deadline = time.monotonic() + 600
            while int(client.info("errorstats").get("errorstat_OOM", {}).get("count", 0)) < 3:
                assert time.monotonic() < deadline, "Redis never filled up"
                time.sleep(0.5)
            pushed_at_oom = int(client.get(PUSH_COUNTER_KEY) or 0)
            # Play goes on while Redis refuses pushes: 1,000 more steps of the agent.
            wait_for_step(log, last_agent_step(log) + 1000)
            assert agent.poll() is None
            assert int(client.get(PUSH_COUNTER_KEY) or 0) - pushed_at_oom < 500  # pushes refused
            client.config_set("maxmemory", "200mb")  # space returns
            deadline = time.monotonic() + 600
            pushed_after = pushed_at_oom
            while pushed_after <= pushed_at_oom + 500 and time.monotonic() < deadline:
                time.sleep(0.5)
                pushed_after = int(client.get(PUSH_COUNTER_KEY) or 0)
            output = stop_agent(agent)
        finally:
            if agent.poll() is None:
                agent.kill()
    assert "Redis is out of memory" in output
    assert pushed_after > pushed_at_oom + 500, "pushing did not recover when memory returned"
    assert "Traceback" not in output


def newest_checkpoint_step(store: Path) -> int:
    """The step of the newest complete checkpoint in `store` (0: none yet), from its name."""
    names = [path.stem for path in list_checkpoints(store)]
    return max((int(name.rsplit("-", 1)[1]) for name in names), default=0)


def kill_mid_save(agent: subprocess.Popen[str], store: Path, after_step: int, timeout: float = 180.0) -> bool:
    """SIGKILL the agent once it has saved a checkpoint past `after_step`: at the first moment a
    save is seen in progress (a temp file), else right after the next save completes.

    Waits for files, never for a time: a slow start-up (torch import, first update) only makes
    it wait longer. Returns whether the kill hit a save in progress.
    """
    deadline = time.monotonic() + timeout
    while newest_checkpoint_step(store) <= after_step:
        assert agent.poll() is None, "the agent exited before its first checkpoint"
        assert time.monotonic() < deadline, f"no checkpoint past step {after_step} within {timeout:.0f}s"
        time.sleep(0.05)
    saved = newest_checkpoint_step(store)
    while True:
        assert time.monotonic() < deadline, f"no checkpoint past step {saved} within {timeout:.0f}s"
        mid_save = any(path.name.startswith(".tmp-") for path in store.iterdir())
        if mid_save or newest_checkpoint_step(store) > saved:
            agent.kill()
            agent.wait()
            return mid_save
        time.sleep(0.002)  # a save of this small network takes milliseconds


def test_sigkill_during_checkpoint_saves_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    store = env_model_store(tmp_path / "models", "CartPole-v1")  # each environment has its own folder
    with EmbeddedRedis() as server:
        settings = {**QUICK_CARTPOLE, "redis_url": server.url, "checkpoint_interval": 100, "checkpoint_keep": 2}
        resumed_at = 0
        for _ in range(4):
            agent = spawn_agent(tmp_path, total_steps=10_000_000, **settings)
            try:
                mid_save = kill_mid_save(agent, store, after_step=resumed_at)
            finally:
                if agent.poll() is None:
                    agent.kill()
                    agent.wait()
            newest = load_newest(store, {})
            assert newest is not None
            leftovers = [path for path in store.iterdir() if path.name.startswith(".tmp-")]
            # Whatever a kill left behind, the newest real checkpoint loads in full.
            assert torch.load(newest["path"], weights_only=True)["step"] == newest["step"]
            restarted = spawn_agent(tmp_path, total_steps=newest["step"] + 50, **settings)
            output, _ = restarted.communicate(timeout=120)
            assert restarted.returncode == 0, output
            assert f"starting at step {newest['step']}" in output
            resumed_at = newest_checkpoint_step(store)
            print(
                f"killed {'mid-save' if mid_save else 'between saves'}; resumed at {newest['step']}; "
                f"temp files left by the kill: {len(leftovers)}"
            )
        assert len(list_checkpoints(store)) >= 1


def test_password_protected_redis_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    with EmbeddedRedis(password="hive-secret") as server:
        without_password = server.url.replace(":hive-secret@", "")
        hive = subprocess.run(
            [sys.executable, "-m", "borg_game.hive", "--agents", "1"],
            cwd=tmp_path,
            env=agent_environment(redis_url=without_password, env_id="CartPole-v1"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert hive.returncode == 2
        assert "requires a password" in hive.stderr and "CONFIG_redis_url" in hive.stderr
        agent = subprocess.run(
            [sys.executable, "-m", "borg_game"],
            cwd=tmp_path,
            env=agent_environment(redis_url=server.url.replace("hive-secret", "wrong"), env_id="CartPole-v1"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert agent.returncode == 2
        assert "rejected the password" in agent.stderr
        assert "wrong" not in agent.stderr  # the password itself is never printed


def test_the_redis_password_never_reaches_logs_or_checkpoints(tmp_path: Path) -> None:
    with EmbeddedRedis(password="hive-secret") as server:
        agent = spawn_agent(
            tmp_path, redis_url=server.url, total_steps=400, **{**QUICK_CARTPOLE, "tensorboard_dir": "runs"}
        )
        output, _ = agent.communicate(timeout=120)
        assert agent.returncode == 0, output
    assert "hive-secret" not in output
    for path in [*tmp_path.rglob("*.pt"), *tmp_path.rglob("events.out.tfevents.*"), tmp_path / "log.jsonl"]:
        assert b"hive-secret" not in path.read_bytes(), path
