"""DoubleDQNLearner in process: updates on a fixed batch, and the target network's updates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from borg_game.envs import make_env
from borg_game.evaluation import evaluate
from borg_game.learner import DoubleDQNLearner
from borg_game.replay import ReplayBatch
from borg_game.settings import Settings, load_settings

OBSERVATION_SHAPE = (4,)
NUM_ACTIONS = 2


def learner_settings(**overrides: str) -> Settings:
    environ = {
        "CONFIG_env_id": "CartPole-v1",
        "CONFIG_mlp_hidden_sizes": "32,32",
        "CONFIG_learning_rate": "0.001",
        "CONFIG_tau": "1.0",  # a hard target update: the tests below check the copy
        "CONFIG_device": "cpu",
    }
    environ.update({f"CONFIG_{key}": value for key, value in overrides.items()})
    return load_settings(environ, env_file=None)


def make_learner(**overrides: str) -> DoubleDQNLearner:
    torch.manual_seed(0)
    return DoubleDQNLearner(OBSERVATION_SHAPE, NUM_ACTIONS, learner_settings(**overrides), torch.device("cpu"))


def fixed_batch(size: int = 64) -> ReplayBatch:
    rng = np.random.default_rng(0)
    return ReplayBatch(
        observations=rng.normal(size=(size, *OBSERVATION_SHAPE)).astype(np.float32),
        actions=rng.integers(0, NUM_ACTIONS, size=size).astype(np.int64),
        rewards=rng.choice([0.0, 1.0], size=size).astype(np.float32),
        next_observations=rng.normal(size=(size, *OBSERVATION_SHAPE)).astype(np.float32),
        terminated=(rng.random(size) < 0.1).astype(np.float32),
        timestamps_ns=np.zeros(size, dtype=np.int64),
    )


def parameters(network: torch.nn.Module) -> list[torch.Tensor]:
    return [parameter.detach().clone() for parameter in network.parameters()]


def test_repeated_updates_on_a_fixed_batch_lower_the_loss() -> None:
    learner, batch = make_learner(), fixed_batch()
    losses = [learner.update(batch).loss for _ in range(200)]
    # The target network stays fixed, so the TD targets do too: a regression the optimizer must fit.
    assert losses[-1] < 0.2 * losses[0], (losses[0], losses[-1])


def test_an_update_reports_finite_loss_q_and_gradient_norm() -> None:
    stats = make_learner().update(fixed_batch())
    assert all(np.isfinite([stats.loss, stats.mean_q, stats.grad_norm]))
    assert stats.loss > 0 and stats.grad_norm > 0


def test_updates_leave_the_target_network_alone_until_the_target_update() -> None:
    learner, batch = make_learner(), fixed_batch()
    before = parameters(learner.target_network)
    for _ in range(20):
        learner.update(batch)
    assert all(torch.equal(old, new) for old, new in zip(before, parameters(learner.target_network), strict=True))
    learner.update_target()
    online = parameters(learner.q_network)
    assert all(torch.equal(target, q) for target, q in zip(parameters(learner.target_network), online, strict=True))


def test_the_learning_rate_set_is_the_step_size_of_the_next_updates() -> None:
    learner, batch = make_learner(), fixed_batch()
    learner.update(batch)  # Adam's moments are not zero: a zero step below is the rate's doing
    learner.set_learning_rate(0.0)
    before = parameters(learner.q_network)
    learner.update(batch)
    assert all(torch.equal(old, new) for old, new in zip(before, parameters(learner.q_network), strict=True))
    learner.set_learning_rate(1e-3)
    learner.update(batch)
    moved = [(new - old).abs().max().item() for old, new in zip(before, parameters(learner.q_network), strict=True)]
    # Adam's first steps are about the learning rate in size, whatever the gradient's scale.
    assert 1e-4 < max(moved) < 1e-2


@pytest.mark.parametrize("tau", [0.005, 0.5])
def test_a_soft_target_update_moves_the_target_by_exactly_tau(tau: float) -> None:
    learner, batch = make_learner(tau=str(tau)), fixed_batch()
    for _ in range(20):
        learner.update(batch)
    target_before, online = parameters(learner.target_network), parameters(learner.q_network)
    learner.update_target()
    for old, q, new in zip(target_before, online, parameters(learner.target_network), strict=True):
        assert not torch.equal(old, q), "the online network moved away from the target"
        torch.testing.assert_close(new, old + tau * (q - old), rtol=0.0, atol=1e-7)


def test_evaluation_calls_after_step_once_per_step_it_plays() -> None:
    steps = 0

    def count() -> None:
        nonlocal steps
        steps += 1

    scores = evaluate(make_learner(), make_env("CartPole-v1", seed=0), 3, 0.0, np.random.default_rng(0), 0, count)
    assert len(scores) == 3 and steps == sum(scores)  # CartPole pays 1 per step


def test_evaluation_ends_with_the_episodes_finished_when_stop_turns_true() -> None:
    steps = 0

    def count() -> None:
        nonlocal steps
        steps += 1

    env = make_env("CartPole-v1", seed=0)
    # A CartPole episode lasts at least 8 steps: stopped after 5, not one has finished.
    stopped = evaluate(make_learner(), env, 3, 0.0, np.random.default_rng(0), 0, count, stop=lambda: steps >= 5)
    assert steps == 5 and stopped == []
    assert evaluate(make_learner(), env, 3, 0.0, np.random.default_rng(0), 0, stop=lambda: True) == []
