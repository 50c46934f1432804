"""Prioritized replay: the priorities of the ring's slots (pure unit tests), then the sampler
over a real mirror pulling from a real redis-server, and the agent loop that feeds it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import redis

from borg_game.agent import AgentServices, run_agent
from borg_game.codec import Transition, TransitionCodec
from borg_game.mirror import MirrorSampler
from borg_game.prioritized import PrioritizedIndexSampler
from borg_game.redis_server import EmbeddedRedis
from borg_game.replay_memory import build_replay_memory
from borg_game.replay_writer import push_transaction
from borg_game.settings import load_settings
from borg_game.telemetry import TrainingLog
from tests.goodness_of_fit import chi_square_p_value

KEY, COUNTER = "transitions", "transitions:pushed"
CODEC = TransitionCodec()


def priorities_of(sampler: PrioritizedIndexSampler, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    return sampler.probabilities(slots) * sampler.total_priority


# --- the priorities of the ring's slots ---------------------------------------------------


def test_new_transitions_enter_at_the_largest_priority_seen() -> None:
    sampler = PrioritizedIndexSampler(100, alpha=1.0, epsilon=1e-6)
    sampler.added(0, 10, 100)
    assert np.allclose(sampler.probabilities(np.arange(10)), 0.1)  # all at the initial 1.0
    sampler.update_priorities(np.arange(10), np.linspace(0.0, 4.0, 10))
    sampler.added(10, 2, 100)
    priorities = priorities_of(sampler, np.arange(12))
    assert priorities[10:].tolist() == pytest.approx([4.0 + 1e-6] * 2)
    assert priorities[:10] == pytest.approx(np.linspace(0.0, 4.0, 10) + 1e-6)


def test_weights_are_those_of_the_paper_on_a_hand_computed_example() -> None:
    sampler = PrioritizedIndexSampler(100, alpha=0.5, beta_start=0.5, epsilon=1e-12)
    sampler.added(0, 4, 100)
    # |td| = 1, 4, 9, 16 with alpha 0.5: priorities 1, 2, 3, 4; P = 0.1, 0.2, 0.3, 0.4.
    sampler.update_priorities(np.arange(4), np.array([-1.0, 4.0, -9.0, 16.0]))
    assert sampler.probabilities(np.arange(4)) == pytest.approx([0.1, 0.2, 0.3, 0.4])
    # (N * P) ** -beta with N = 4, beta = 0.5: 0.4 ** -0.5 = 1.58114, 0.8 ** -0.5 = 1.11803,
    # 1.2 ** -0.5 = 0.91287, 1.6 ** -0.5 = 0.79057; then divided by the batch's largest.
    unnormalized = np.array([1.58114, 1.11803, 0.91287, 0.79057])
    for slots in ([0, 1, 2, 3], [1, 3, 3, 2], [3, 3, 3, 3]):
        weights = sampler.importance_weights(np.array(slots), 4)
        assert weights == pytest.approx(unnormalized[slots] / unnormalized[slots].max(), rel=1e-5)
        assert weights.dtype == np.float32 and weights.max() == 1.0


def test_beta_rises_linearly_to_one_and_stays() -> None:
    sampler = PrioritizedIndexSampler(10, beta_start=0.4, beta_steps=1_000)
    assert sampler.beta == 0.4
    sampler.anneal(500)
    assert sampler.beta == pytest.approx(0.7)
    sampler.anneal(5_000)
    assert sampler.beta == 1.0


def test_draws_follow_the_priorities() -> None:
    sampler = PrioritizedIndexSampler(1_000, alpha=0.6)
    sampler.added(0, 40, 1_000)
    td_errors = np.random.default_rng(5).exponential(size=40)
    sampler.update_priorities(np.arange(40), td_errors)
    expected = (td_errors + sampler.epsilon) ** 0.6
    rng = np.random.default_rng(11)
    counts = np.bincount(np.concatenate([sampler.sample(40, 32, rng) for _ in range(1_000)]), minlength=40)
    # Fixed seeds: deterministic. Stratified draws vary less than independent ones, so the
    # test is conservative for the right distribution and still fails a wrong one outright.
    assert chi_square_p_value(counts, expected / expected.sum()) > 0.001
    assert chi_square_p_value(counts, np.full(40, 1 / 40)) < 1e-9


def test_updates_after_sampling_change_the_next_draws() -> None:
    sampler = PrioritizedIndexSampler(1_000, alpha=1.0)
    sampler.added(0, 64, 1_000)
    rng = np.random.default_rng(0)
    slots = sampler.sample(64, 32, rng)
    errors = np.where(slots == slots[0], 100.0, 0.01)
    sampler.update_priorities(slots, errors)
    favourite, touched = int(slots[0]), len(set(slots.tolist()))
    draws = np.concatenate([sampler.sample(64, 32, rng) for _ in range(50)])
    # Mass 100 for the favourite, 0.01 for the other slots just updated, 1.0 for the untouched.
    expected_share = 100 / (100 + (touched - 1) * 0.01 + (64 - touched) * 1.0)
    assert np.mean(draws == favourite) == pytest.approx(expected_share, abs=0.05)
    sampler.update_priorities(np.array([favourite]), np.array([0.0]))
    draws = np.concatenate([sampler.sample(64, 32, rng) for _ in range(50)])
    assert np.mean(draws == favourite) < 0.01


def test_a_wrapping_ring_gives_overwritten_slots_the_maximum_priority() -> None:
    sampler = PrioritizedIndexSampler(8, alpha=1.0, epsilon=1e-6)
    sampler.added(0, 8, 8)
    sampler.update_priorities(np.arange(8), np.array([0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 5.0]))
    sampler.added(0, 3, 8)  # the ring wraps: slots 0, 1, 2 get new transitions
    priorities = priorities_of(sampler, np.arange(8))
    assert priorities[:3] == pytest.approx([5.0 + 1e-6] * 3)  # not the 0.01 their old transitions had
    assert priorities[3:7] == pytest.approx([0.01 + 1e-6] * 4)
    sampler.update_priorities(np.array([7, 0]), np.array([0.01, 0.01]))
    sampler.added(7, 2, 8)  # a write that wraps past the end: slots 7 and 0
    assert priorities_of(sampler, np.array([7, 0])) == pytest.approx([5.0 + 1e-6] * 2)
    sampler.added(5, 29, 8)  # more than a whole ring at once: every slot is new
    assert sampler.probabilities(np.arange(8)) == pytest.approx([1 / 8] * 8)


def test_an_error_measured_before_its_slot_was_overwritten_is_not_applied() -> None:
    sampler = PrioritizedIndexSampler(8, alpha=1.0)
    sampler.added(0, 8, 8)
    slots = sampler.sample(8, 8, np.random.default_rng(0))
    sampler.added(0, 2, 8)  # slots 0 and 1 get new transitions after the batch was drawn
    sampler.update_priorities(slots, np.full(8, 0.5))
    priorities = priorities_of(sampler, np.arange(8))
    assert priorities[:2] == pytest.approx([1.0, 1.0])  # the new transitions' maximum
    assert priorities[2:] == pytest.approx([0.5 + sampler.epsilon] * 6)


@pytest.mark.parametrize(
    ("setting", "value"), [("alpha", 1.5), ("beta_start", -0.1), ("epsilon", 0.0), ("beta_steps", 0)]
)
def test_settings_out_of_range_are_refused(setting: str, value: float) -> None:
    with pytest.raises(ValueError, match=setting):
        PrioritizedIndexSampler(10, **{setting: value})  # type: ignore[arg-type]


# --- over a real mirror ---------------------------------------------------------------------


def push(client: redis.Redis, steps: range, capacity: int = 1_000, key: str = KEY, counter: str = COUNTER) -> None:
    """Push vector transitions whose state's first entry is their step."""
    entries = []
    for step in steps:
        state = np.array([step, 0.0, 0.0, 0.0], dtype=np.float32)
        entries.append(CODEC.encode(Transition(state, 0, 0.0, state, False, False, "a", 0, step, time.time_ns())))
    pipeline = client.pipeline(transaction=True)
    push_transaction(pipeline, key, counter, capacity, entries)
    pipeline.execute()


def test_a_mirror_draws_by_priority_and_pulls_enter_at_the_maximum(redis_client: redis.Redis) -> None:
    priorities = PrioritizedIndexSampler(8, alpha=1.0)
    mirror = MirrorSampler(redis_client, KEY, COUNTER, 8, CODEC, index_sampler=priorities)
    rng = np.random.default_rng(0)
    assert mirror.sync() and mirror.sample(4, rng) is None
    push(redis_client, range(6))
    mirror.sync()
    assert mirror.size() == 6 and priorities.total_priority == pytest.approx(6.0)
    priorities.update_priorities(np.arange(6), np.array([0.0, 0.0, 0.0, 0.0, 0.0, 3.0]))
    push(redis_client, range(6, 10))  # the mirror's ring wraps: steps 8 and 9 go to slots 0 and 1
    mirror.sync()
    assert priorities_of(priorities, np.arange(8)) == pytest.approx(
        [3.0, 3.0, 1e-6, 1e-6, 1e-6, 3.0, 3.0, 3.0], rel=1e-5
    )
    ring = {0: 8, 1: 9, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7}
    for _ in range(10):
        batch = mirror.sample(8, rng)
        assert batch is not None and batch.indices is not None
        # Slots 2-4 hold 3e-6 of the 15 units of priority: no stratified draw lands there.
        assert not set(batch.indices.tolist()) & {2, 3, 4}
        # The batch holds the transitions of its slots: state[0] is the step pushed.
        assert batch.observations[:, 0].tolist() == [ring[slot] for slot in batch.indices.tolist()]


def test_the_agent_loop_feeds_td_errors_back_and_anneals_beta(redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    settings = load_settings(
        {
            "CONFIG_env_id": "CartPole-v1",
            "CONFIG_redis_url": redis_server.url,
            "CONFIG_prioritized_replay": "true",
            "CONFIG_priority_beta_start": "0.4",
            "CONFIG_priority_beta_steps": "1200",
            "CONFIG_total_steps": "600",
            "CONFIG_learning_starts": "100",
            "CONFIG_train_frequency": "4",
            "CONFIG_gradient_steps": "1",
            "CONFIG_batch_size": "32",
            "CONFIG_mlp_hidden_sizes": "16",
            "CONFIG_eval_interval": "0",
            "CONFIG_model_store": str(tmp_path),
            "CONFIG_tensorboard_dir": "",
            "CONFIG_resume": "false",
        },
        env_file=None,
    )
    # The hive's memory already holds transitions of CartPole's shape: every training round from
    # learning_starts on has a batch, however far behind the agent's own writer thread runs.
    push(client, range(200), key=settings.env_replay_key, counter=settings.env_push_counter_key)
    memory = build_replay_memory(settings, client)
    priorities = memory.priorities
    assert priorities is not None
    services = AgentServices(memory.writer, memory.sampler, TrainingLog("r", "a", []), priorities=priorities)
    try:
        result = run_agent(settings, "a", services, threading.Event())
    finally:
        memory.writer.close()
    assert result.updates == (600 - 100) // 4 + 1  # a gradient step every 4th step from step 100 to 600
    held = priorities_of(priorities, np.arange(memory.sampler.size(), dtype=np.int64))
    # Transitions learned from carry (|TD error| + eps) ** 0.6, each its own; the rest the maximum.
    learned = held[held < priorities.max_priority]
    assert len(np.unique(learned)) > 50
    assert priorities.beta == pytest.approx(0.4 + 0.6 * 600 / 1200)  # set by the last round, at step 600
