"""Faults survived against real servers: Redis restarts, Redis OOM, kills mid-checkpoint, auth."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis
import torch

from borg_game.checkpoint import list_checkpoints, load_newest
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


def last_agent_step(log: Path) -> int:
    lines = log.read_text().splitlines() if log.exists() else []
    steps = [json.loads(line)["agent_step"] for line in lines[-50:]]
    return max(steps, default=0)


def steps_per_second(log: Path, seconds: float) -> float:
    before, started = last_agent_step(log), time.monotonic()
    time.sleep(seconds)
    return (last_agent_step(log) - before) / (time.monotonic() - started)


def wait_for_step(log: Path, step: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while last_agent_step(log) < step:
        assert time.monotonic() < deadline, f"agent did not reach step {step}"
        time.sleep(0.1)


def stop_agent(agent: subprocess.Popen[str]) -> str:
    agent.send_signal(signal.SIGTERM)
    output, _ = agent.communicate(timeout=30)
    assert agent.returncode == 0, output
    return output


def test_agent_survives_a_redis_restart_and_the_memory_persists(tmp_path: Path) -> None:
    server = EmbeddedRedis(data_dir=tmp_path / "redis", persistence=True).start()
    agent = spawn_agent(tmp_path, redis_url=server.url, total_steps=10_000_000, **QUICK_CARTPOLE)
    log = tmp_path / "log.jsonl"
    try:
        wait_for_step(log, 3000)
        client = redis.Redis.from_url(server.url)
        rate_up = steps_per_second(log, 2.0)
        server.stop()  # SIGTERM: Redis writes its AOF and exits
        rate_down = steps_per_second(log, 4.0)
        assert agent.poll() is None, "agent died with Redis"
        server.start()
        client = redis.Redis.from_url(server.url)
        count_after_restart = int(client.llen("transitions"))
        pushed_after_restart = int(client.get("transitions:pushed") or 0)
        deadline = time.monotonic() + 60  # the writer's retry backoff is at most 5 s
        pushed_later = pushed_after_restart
        while pushed_later <= pushed_after_restart and time.monotonic() < deadline:
            time.sleep(0.5)
            pushed_later = int(client.get("transitions:pushed") or 0)
        output = stop_agent(agent)
    finally:
        if agent.poll() is None:
            agent.kill()
        server.stop()
    print(f"steps/s with Redis up {rate_up:.0f}, down {rate_down:.0f}; list after restart {count_after_restart}")
    assert count_after_restart >= 3000, "the shared memory did not survive the restart"
    assert count_after_restart == pushed_after_restart
    assert pushed_later > pushed_after_restart, "pushing did not resume:\n" + output[-2000:]
    assert rate_down > 0.3 * rate_up, "play was held back while Redis was down"
    assert "not pull from Redis" in output or "push of" in output  # the outage was logged
    assert "Traceback" not in output


def test_redis_out_of_memory_is_reported_and_pushing_recovers(tmp_path: Path) -> None:
    with EmbeddedRedis(maxmemory="3mb") as server:
        agent = spawn_agent(tmp_path, redis_url=server.url, total_steps=10_000_000, **QUICK_CARTPOLE)
        log = tmp_path / "log.jsonl"
        client = redis.Redis.from_url(server.url)
        try:
            # Wait until Redis has refused pushes for being out of memory (its error statistics say).
            deadline = time.monotonic() + 120
            while int(client.info("errorstats").get("errorstat_OOM", {}).get("count", 0)) < 3:
                assert time.monotonic() < deadline, "Redis never filled up"
                time.sleep(0.5)
            pushed_at_oom = int(client.get("transitions:pushed") or 0)
            rate_while_full = steps_per_second(log, 3.0)
            assert agent.poll() is None
            assert int(client.get("transitions:pushed") or 0) - pushed_at_oom < 500  # pushes refused
            client.config_set("maxmemory", "200mb")  # space returns
            deadline = time.monotonic() + 60
            pushed_after = pushed_at_oom
            while pushed_after <= pushed_at_oom + 500 and time.monotonic() < deadline:
                time.sleep(0.5)
                pushed_after = int(client.get("transitions:pushed") or 0)
            output = stop_agent(agent)
        finally:
            if agent.poll() is None:
                agent.kill()
    assert "Redis is out of memory" in output
    assert pushed_after > pushed_at_oom + 500, "pushing did not recover when memory returned"
    assert rate_while_full > 100, "the agent stopped playing while Redis was full"
    assert "Traceback" not in output


def test_sigkill_during_checkpoint_saves_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    rng = random.Random(0)
    with EmbeddedRedis() as server:
        settings = {**QUICK_CARTPOLE, "redis_url": server.url, "checkpoint_interval": 100, "checkpoint_keep": 2}
        for _ in range(4):
            agent = spawn_agent(tmp_path, total_steps=10_000_000, **settings)
            time.sleep(4.0 + rng.random() * 2.0)  # saves happen every 100 steps: likely mid-save
            agent.kill()
            agent.wait()
            newest = load_newest(tmp_path / "models", {})
            assert newest is not None
            leftovers = [path for path in (tmp_path / "models").iterdir() if path.name.startswith(".tmp-")]
            # Whatever a kill left behind, the newest real checkpoint loads in full.
            assert torch.load(newest["path"], weights_only=True)["step"] == newest["step"]
            restarted = spawn_agent(tmp_path, total_steps=newest["step"] + 50, **settings)
            output, _ = restarted.communicate(timeout=120)
            assert restarted.returncode == 0, output
            assert f"starting at step {newest['step']}" in output
            print(f"killed; resumed at {newest['step']}; temp files left by the kill: {len(leftovers)}")
        assert len(list_checkpoints(tmp_path / "models")) >= 1


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
