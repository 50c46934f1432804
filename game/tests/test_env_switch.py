"""Switching CONFIG_env_id on a hive whose Redis and model store hold another game's data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import redis
import torch

from borg_game.checkpoint import atomic_torch_save, checkpoint_path, env_model_store
from borg_game.codec import Transition, TransitionCodec
from borg_game.redis_server import EmbeddedRedis
from tests.conftest import spawn_agent

PONG = "ALE/Pong-v5"
CARTPOLE = "CartPole-v1"
PONG_ENTRIES = 50


def pong_entries(count: int) -> list[bytes]:
    frames = np.zeros((5, 84, 84), dtype=np.uint8)
    codec = TransitionCodec()
    return [codec.encode(Transition(frames[:4], 0, 0.0, frames[1:], False, False)) for _ in range(count)]


def push(client: redis.Redis, key: str, counter: str, entries: list[bytes]) -> None:
    client.lpush(key, *entries)
    client.incrby(counter, len(entries))


def test_an_agent_switched_to_cartpole_ignores_pong_data_and_learns(
    tmp_path: Path, redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    # What a Pong hive left: its replay list, and checkpoints in its model store folder.
    push(redis_client, f"transitions:{PONG}", f"transitions:pushed:{PONG}", pong_entries(PONG_ENTRIES))
    pong_checkpoint = {
        "format": 1,
        "model": {"w": torch.zeros(1)},
        "step": 1000,
        "compatibility": {"env_id": PONG, "observation_shape": [4, 84, 84], "num_actions": 6},
    }
    models = tmp_path / "models"
    atomic_torch_save(pong_checkpoint, checkpoint_path(env_model_store(models, PONG), "agent-0", 1000))
    # And the worst case: Pong data where a CartPole agent looks (a key shared by configuration,
    # a checkpoint copied by hand), first in line.
    push(redis_client, f"transitions:{CARTPOLE}", f"transitions:pushed:{CARTPOLE}", pong_entries(PONG_ENTRIES))
    atomic_torch_save(pong_checkpoint, checkpoint_path(env_model_store(models, CARTPOLE), "agent-0", 1000))

    agent = spawn_agent(
        tmp_path,
        redis_url=redis_server.url,
        env_id=CARTPOLE,
        agent_index=0,
        total_steps=1500,
        learning_starts=300,
        train_frequency=4,
        gradient_steps=1,
        train_log_interval=50,
        eval_interval=0,
        mlp_hidden_sizes="16",
        tensorboard_dir="",
        training_log_file="log.jsonl",
    )
    output, _ = agent.communicate(timeout=300)

    assert agent.returncode == 0, output
    assert output.count("do not fit this agent") == 1, output
    assert "starting fresh" in output and "starting at step 0" in output
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    trains = [record for record in records if record["type"] == "train"]
    assert trains, "the agent never learned"
    assert trains[-1]["corrupt_entries"] == PONG_ENTRIES  # every foreign entry skipped and counted
    assert trains[-1]["replay_size"] > 300  # its own transitions, none of Pong's
    assert int(redis_client.llen(f"transitions:{PONG}")) == PONG_ENTRIES  # Pong's memory untouched
    assert len(list(env_model_store(models, PONG).iterdir())) == 1
