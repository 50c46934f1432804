"""Prioritized replay over the mirror, against a real redis-server (the mirror pulls from it)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import redis

from borg_game.__main__ import build_sampler, build_writer
from borg_game.agent import AgentServices, run_agent
from borg_game.codec import Transition, TransitionCodec
from borg_game.prioritized import PrioritizedSampler
from borg_game.redis_server import EmbeddedRedis
from borg_game.replay import MirrorSampler, push_transaction
from borg_game.settings import load_settings
from borg_game.telemetry import TrainingLog
from tests.goodness_of_fit import chi_square_p_value

KEY, COUNTER = "transitions", "transitions:pushed"
CODEC = TransitionCodec()


def push(client: redis.Redis, steps: range, capacity: int = 1_000) -> None:
    """Push vector transitions whose state's first entry is their step."""
    entries = []
    for step in steps:
        state = np.array([step, 0.0, 0.0, 0.0], dtype=np.float32)
        entries.append(CODEC.encode(Transition(state, 0, 0.0, state, False, False, "a", 0, step, time.time_ns())))
    pipeline = client.pipeline(transaction=True)
    push_transaction(pipeline, KEY, COUNTER, capacity, entries)
    pipeline.execute()


def prioritized(client: redis.Redis, capacity: int, **settings: float) -> PrioritizedSampler:
    return PrioritizedSampler(MirrorSampler(client, KEY, COUNTER, capacity, CODEC), **settings)  # type: ignore[arg-type]


def all_slots(sampler: PrioritizedSampler) -> np.ndarray:
    return np.arange(sampler.size(), dtype=np.int64)


def test_new_transitions_enter_at_the_largest_priority_seen(redis_client: redis.Redis) -> None:
    sampler = prioritized(redis_client, 100, alpha=1.0, epsilon=1e-6)
    push(redis_client, range(10))
    assert sampler.sync() and sampler.size() == 10
    assert np.allclose(sampler.probabilities(all_slots(sampler)), 0.1)  # all at the initial 1.0
    sampler.update_priorities(np.arange(10), np.linspace(0.0, 4.0, 10))
    push(redis_client, range(10, 12))
    sampler.sync()
    priorities = sampler.probabilities(all_slots(sampler)) * sampler.total_priority
    assert priorities[10:].tolist() == pytest.approx([4.0, 4.0])
    assert priorities[:10] == pytest.approx(np.linspace(0.0, 4.0, 10) + 1e-6)


def test_weights_are_those_of_the_paper_on_a_hand_computed_example(redis_client: redis.Redis) -> None:
    sampler = prioritized(redis_client, 100, alpha=0.5, beta_start=0.5, epsilon=1e-12)
    push(redis_client, range(4))
    sampler.sync()
    # |td| = 1, 4, 9, 16 with alpha 0.5: priorities 1, 2, 3, 4; P = 0.1, 0.2, 0.3, 0.4.
    sampler.update_priorities(np.arange(4), np.array([-1.0, 4.0, -9.0, 16.0]))
    assert sampler.probabilities(np.arange(4)) == pytest.approx([0.1, 0.2, 0.3, 0.4])
    # (N * P) ** -beta with N = 4, beta = 0.5: 0.4 ** -0.5 = 1.58114, 0.8 ** -0.5 = 1.11803,
    # 1.2 ** -0.5 = 0.91287, 1.6 ** -0.5 = 0.79057; then divided by the batch's largest.
    unnormalized = np.array([1.58114, 1.11803, 0.91287, 0.79057])
    rng = np.random.default_rng(0)
    for _ in range(20):
        batch = sampler.sample(4, rng)
        assert batch is not None and batch.slots is not None and batch.weights is not None
        expected = unnormalized[batch.slots] / unnormalized[batch.slots].max()
        assert batch.weights == pytest.approx(expected, rel=1e-5)
        assert batch.weights.dtype == np.float32 and batch.weights.max() == 1.0
        # The batch holds the transitions of its slots (state[0] is the step pushed).
        assert batch.observations[:, 0].tolist() == batch.slots.tolist()


def test_beta_rises_linearly_to_one_and_stays(redis_client: redis.Redis) -> None:
    sampler = prioritized(redis_client, 10, beta_start=0.4, beta_steps=1_000)
    assert sampler.beta == 0.4
    sampler.anneal(500)
    assert sampler.beta == pytest.approx(0.7)
    sampler.anneal(5_000)
    assert sampler.beta == 1.0


def test_draws_follow_the_priorities(redis_client: redis.Redis) -> None:
    sampler = prioritized(redis_client, 1_000, alpha=0.6)
    push(redis_client, range(40))
    sampler.sync()
    td_errors = np.random.default_rng(5).exponential(size=40)
    sampler.update_priorities(np.arange(40), td_errors)
    expected = (td_errors + sampler.epsilon) ** 0.6
    counts = np.zeros(40, dtype=np.int64)
    rng = np.random.default_rng(11)
    for _ in range(1_000):
        batch = sampler.sample(32, rng)
        assert batch is not None and batch.slots is not None
        counts += np.bincount(batch.slots, minlength=40)
    # Fixed seeds: deterministic. Stratified draws vary less than independent ones, so the
    # test is conservative for the right distribution and still fails a wrong one outright.
    assert chi_square_p_value(counts, expected / expected.sum()) > 0.001
    uniform = np.full(40, 1 / 40)
    assert chi_square_p_value(counts, uniform) < 1e-9


def test_updates_after_sampling_change_the_next_draws(redis_client: redis.Redis) -> None:
    sampler = prioritized(redis_client, 1_000, alpha=1.0)
    push(redis_client, range(64))
    sampler.sync()
    rng = np.random.default_rng(0)
    batch = sampler.sample(32, rng)
    assert batch is not None and batch.slots is not None
    errors = np.full(32, 0.01)
    errors[batch.slots == batch.slots[0]] = 100.0
    sampler.update_priorities(batch.slots, errors)
    favourite, touched = int(batch.slots[0]), len(set(batch.slots.tolist()))
    draws = np.concatenate([sampler.sample(32, rng).slots for _ in range(50)])  # type: ignore[union-attr]
    # Mass 100 for the favourite, 0.01 for the other slots just updated, 1.0 for the untouched.
    expected_share = 100 / (100 + (touched - 1) * 0.01 + (64 - touched) * 1.0)
    assert np.mean(draws == favourite) == pytest.approx(expected_share, abs=0.05)
    sampler.update_priorities(np.array([favourite]), np.array([0.0]))
    draws = np.concatenate([sampler.sample(32, rng).slots for _ in range(50)])  # type: ignore[union-attr]
    assert np.mean(draws == favourite) < 0.01


def test_a_wrapping_ring_gives_overwritten_slots_the_maximum_priority(redis_client: redis.Redis) -> None:
    sampler = prioritized(redis_client, 8, alpha=1.0, epsilon=1e-6)
    push(redis_client, range(8))
    sampler.sync()
    sampler.update_priorities(np.arange(8), np.array([0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 5.0]))
    push(redis_client, range(8, 11))  # the ring wraps: slots 0, 1, 2 get steps 8, 9, 10
    sampler.sync()
    priorities = sampler.probabilities(np.arange(8)) * sampler.total_priority
    assert priorities[:3] == pytest.approx([5.0 + 1e-6] * 3)  # not the 0.01 their old transitions had
    assert priorities[3:7] == pytest.approx([0.01 + 1e-6] * 4)
    # Falling a whole ring behind resets every slot.
    push(redis_client, range(11, 40))
    sampler.sync()
    assert sampler.probabilities(np.arange(8)) == pytest.approx([1 / 8] * 8)


def test_an_error_measured_before_a_pull_overwrote_the_slot_is_not_applied(redis_client: redis.Redis) -> None:
    sampler = prioritized(redis_client, 8, alpha=1.0)
    push(redis_client, range(8))
    sampler.sync()
    batch = sampler.sample(8, np.random.default_rng(0))
    assert batch is not None and batch.slots is not None
    push(redis_client, range(8, 10))  # overwrites slots 0 and 1 after the batch was drawn
    sampler.sync()
    sampler.update_priorities(batch.slots, np.full(8, 0.5))
    priorities = sampler.probabilities(np.arange(8)) * sampler.total_priority
    assert priorities[:2] == pytest.approx([1.0, 1.0])  # the new transitions' maximum
    assert priorities[2:] == pytest.approx([0.5 + sampler.epsilon] * 6)


def test_too_few_transitions_give_no_batch(redis_client: redis.Redis) -> None:
    sampler = prioritized(redis_client, 100)
    assert sampler.sample(4, np.random.default_rng(0)) is None
    push(redis_client, range(3))
    sampler.sync()
    assert sampler.sample(4, np.random.default_rng(0)) is None
    assert sampler.sample(3, np.random.default_rng(0)) is not None


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("alpha", 1.5, "alpha"),
        ("beta_start", -0.1, "beta_start"),
        ("epsilon", 0.0, "epsilon"),
        ("beta_steps", 0, "beta_steps"),
    ],
)
def test_settings_out_of_range_are_refused(redis_client: redis.Redis, setting: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        prioritized(redis_client, 10, **{setting: value})


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
    sampler = build_sampler(settings, client, TransitionCodec())
    assert isinstance(sampler, PrioritizedSampler)
    writer = build_writer(settings, client)
    try:
        result = run_agent(settings, "a", AgentServices(writer, sampler, TrainingLog("r", "a", [])), threading.Event())
    finally:
        writer.close()
    assert result.updates > 50
    held = np.arange(sampler.size(), dtype=np.int64)
    priorities = sampler.probabilities(held) * sampler.total_priority
    # Transitions learned from carry (|TD error| + eps) ** 0.6, each its own; the rest the maximum.
    learned = priorities[priorities < sampler.max_priority]
    assert len(np.unique(learned)) > 50
    assert sampler.beta == pytest.approx(0.4 + 0.6 * 600 / 1200)  # set by the last round, at step 600
