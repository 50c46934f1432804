from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch

from borg_game.checkpoint import (
    AgentState,
    Checkpointer,
    atomic_torch_save,
    checkpoint_path,
    compatibility_of,
    env_model_store,
    list_checkpoints,
    load_newest,
    prune_checkpoints,
    prune_stale_agents,
)
from borg_game.ddqn import linear_schedule
from borg_game.learner import DoubleDQNLearner
from borg_game.redis_server import EmbeddedRedis
from tests.conftest import spawn_agent
from tests.test_learner import NUM_ACTIONS, OBSERVATION_SHAPE, fixed_batch, learner_settings

COMPAT = {"env_id": "CartPole-v1", "observation_shape": [4], "num_actions": 2, "mlp_hidden_sizes": [8]}


def payload(step: int, **compat: object) -> dict[str, object]:
    return {"format": 1, "model": {"w": torch.ones(2) * step}, "step": step, "compatibility": {**COMPAT, **compat}}


def test_newest_checkpoint_wins_and_old_ones_are_pruned(tmp_path: Path) -> None:
    for step in (10, 20, 30, 40):
        atomic_torch_save(payload(step), checkpoint_path(tmp_path, "a", step))
        time.sleep(0.01)  # distinct mtimes
    prune_checkpoints(tmp_path, "a", keep=2)
    assert [path.name for path in list_checkpoints(tmp_path)] == [
        "checkpoint-a-000000000040.pt",
        "checkpoint-a-000000000030.pt",
    ]
    loaded = load_newest(tmp_path, COMPAT)
    assert loaded is not None and loaded["step"] == 40


def test_half_written_and_corrupt_files_are_never_read(tmp_path: Path) -> None:
    atomic_torch_save(payload(10), checkpoint_path(tmp_path, "a", 10))
    time.sleep(0.01)
    # What a crash during a save leaves behind: a temp file, never renamed into place...
    (tmp_path / ".tmp-abc.pt").write_bytes(b"\x80\x02partial")
    # ...and a corrupt file with a checkpoint's name (e.g. a disk error).
    checkpoint_path(tmp_path, "a", 20).write_bytes(b"not a checkpoint")
    loaded = load_newest(tmp_path, COMPAT)
    assert loaded is not None and loaded["step"] == 10


def age(path: Path, seconds_ago: float) -> None:
    when = time.time() - seconds_ago
    os.utime(path, (when, when))


def test_a_checkpoint_that_does_not_fit_is_skipped_for_an_older_one_that_does(tmp_path: Path) -> None:
    atomic_torch_save(payload(10), checkpoint_path(tmp_path, "a", 10))
    age(checkpoint_path(tmp_path, "a", 10), 60)
    atomic_torch_save(payload(20, mlp_hidden_sizes=[64]), checkpoint_path(tmp_path, "a", 20))
    loaded = load_newest(tmp_path, COMPAT)
    assert loaded is not None and loaded["step"] == 10


def test_only_unfit_checkpoints_mean_a_fresh_start(tmp_path: Path) -> None:
    atomic_torch_save(payload(10, env_id="ALE/Pong-v5", num_actions=6), checkpoint_path(tmp_path, "a", 10))
    assert load_newest(tmp_path, COMPAT) is None


def test_an_agent_resumes_its_own_checkpoint_before_a_newer_one_of_another(tmp_path: Path) -> None:
    atomic_torch_save(payload(10), checkpoint_path(tmp_path, "agent-0", 10))
    age(checkpoint_path(tmp_path, "agent-0", 10), 60)
    atomic_torch_save(payload(20), checkpoint_path(tmp_path, "agent-1", 20))
    own = load_newest(tmp_path, COMPAT, "agent-0")
    newcomer = load_newest(tmp_path, COMPAT, "agent-2")
    assert own is not None and own["step"] == 10
    assert newcomer is not None and newcomer["step"] == 20


def test_files_of_agents_unused_for_days_are_pruned_and_others_kept(tmp_path: Path) -> None:
    for agent in ("agent-0", "agent-1", "host-7", "me"):
        atomic_torch_save(payload(10), checkpoint_path(tmp_path, agent, 10))
        atomic_torch_save(payload(10), tmp_path / f"best-{agent}.pt")
    for agent in ("host-7", "me"):  # unused for 20 days
        age(checkpoint_path(tmp_path, agent, 10), 20 * 86_400)
        age(tmp_path / f"best-{agent}.pt", 20 * 86_400)
    age(checkpoint_path(tmp_path, "agent-1", 10), 20 * 86_400)  # its best model is recent: in use
    (tmp_path / ".tmp-x.pt").write_bytes(b"partial")

    assert prune_stale_agents(tmp_path, "me", max_age_days=14) == ["host-7"]
    assert prune_stale_agents(tmp_path, "me", max_age_days=0) == []
    left = sorted(path.name for path in tmp_path.iterdir())
    assert left == [
        ".tmp-x.pt",
        "best-agent-0.pt",
        "best-agent-1.pt",
        "best-me.pt",
        "checkpoint-agent-0-000000000010.pt",
        "checkpoint-agent-1-000000000010.pt",
        "checkpoint-me-000000000010.pt",
    ]


def test_sigterm_writes_a_checkpoint_and_a_restart_continues_from_it(tmp_path: Path) -> None:
    with EmbeddedRedis() as server:
        settings = {
            "redis_url": server.url,
            "env_id": "CartPole-v1",
            "agent_index": 0,
            "agent_id": "solo",
            "total_steps": 10_000_000,
            "learning_starts": 200,
            "epsilon_decay_steps": 1_000_000,
            "epsilon_end": 0.01,
            "train_frequency": 4,
            "gradient_steps": 1,
            "eval_interval": 0,
            "checkpoint_interval": 1_000_000,
            "mlp_hidden_sizes": "16",
            "tensorboard_dir": "",
            "status_interval": 0.2,
        }
        agent = spawn_agent(tmp_path, **settings)
        # Wait until it has played a while, as its status in Redis shows.
        import redis

        client = redis.Redis.from_url(server.url)
        deadline = time.monotonic() + 120
        step = 0
        while step < 1500 and time.monotonic() < deadline:
            raw = client.get("borg:status:borg-dqn:solo")
            step = json.loads(raw)["step"] if raw else 0
            time.sleep(0.1)
        assert step >= 1500, "agent did not get going"
        agent.send_signal(signal.SIGTERM)
        # A generous deadline, not a speed test: the reference's agent never exited on SIGTERM.
        output, _ = agent.communicate(timeout=120)
        assert agent.returncode == 0, output
        store = env_model_store(tmp_path / "models", "CartPole-v1")
        saved = list_checkpoints(store)
        assert len(saved) == 1
        first = load_newest(store, {})
        assert first is not None
        stopped_at, epsilon = first["step"], first["epsilon"]
        assert stopped_at >= 1500
        assert epsilon == pytest.approx(1.0 - stopped_at / 1_000_000 * 0.99)

        settings["total_steps"] = stopped_at + 100
        restarted = spawn_agent(tmp_path, **settings)
        output, _ = restarted.communicate(timeout=120)
        assert restarted.returncode == 0, output
        assert f"starting at step {stopped_at}" in output
        second = load_newest(store, {})
        assert second is not None and second["step"] == stopped_at + 100
        assert second["epsilon"] < epsilon
        # The optimizer state came along: Adam's step counter kept growing.
        adam_steps = [state["step"] for state in second["optimizer"]["state"].values()]
        first_adam_steps = [state["step"] for state in first["optimizer"]["state"].values()]
        assert adam_steps[0] > first_adam_steps[0]


def test_save_then_resume_restores_counters_epsilon_weights_and_optimizer(tmp_path: Path) -> None:
    settings = learner_settings(model_store=str(tmp_path), epsilon_decay_steps="10000")
    compatibility = compatibility_of(settings, OBSERVATION_SHAPE, NUM_ACTIONS)
    torch.manual_seed(1)
    trained = DoubleDQNLearner(OBSERVATION_SHAPE, NUM_ACTIONS, settings, torch.device("cpu"))
    for _ in range(5):
        trained.update(fixed_batch())  # Adam's moments and step counts: state worth restoring
    trained.update_target()
    state = AgentState(step=1_234, episode=7, updates=5, best_eval=42.5)
    schedule = (settings.epsilon_start, settings.epsilon_end, settings.epsilon_decay_steps)
    epsilon = linear_schedule(state.step, *schedule)
    Checkpointer(settings, "agent-0", compatibility).save(trained, state, epsilon)

    torch.manual_seed(2)
    fresh = DoubleDQNLearner(OBSERVATION_SHAPE, NUM_ACTIONS, settings, torch.device("cpu"))
    resumed = Checkpointer(settings, "agent-1", compatibility).resume(fresh)

    assert resumed == state
    saved = load_newest(env_model_store(tmp_path, settings.env_id), compatibility)
    assert saved is not None and saved["epsilon"] == epsilon
    assert linear_schedule(resumed.step, *schedule) == epsilon
    for network in ("q_network", "target_network"):
        before, after = getattr(trained, network).state_dict(), getattr(fresh, network).state_dict()
        assert all(torch.equal(before[name], after[name]) for name in before), network
    optimizer_before, optimizer_after = trained.optimizer.state_dict(), fresh.optimizer.state_dict()
    assert optimizer_before["param_groups"] == optimizer_after["param_groups"]
    assert optimizer_before["state"].keys() == optimizer_after["state"].keys()
    for index, moments in optimizer_before["state"].items():
        for name, value in moments.items():
            assert torch.equal(value, optimizer_after["state"][index][name]), (index, name)
