from __future__ import annotations

import pytest
import torch

from borg_game.ddqn import (
    ape_x_epsilon,
    ape_x_wrap_warning,
    double_dqn_targets,
    linear_schedule,
    td_loss,
    weighted_td_loss,
)


def test_double_dqn_target_on_a_hand_computed_batch() -> None:
    rewards = torch.tensor([1.0, 0.0, -1.0])
    terminated = torch.tensor([0.0, 0.0, 1.0])
    # Online net prefers action 0 in s'1 and action 2 in s'2; the target net disagrees.
    next_q_online = torch.tensor([[5.0, 1.0, 0.0], [0.0, 1.0, 3.0], [9.0, 0.0, 0.0]])
    next_q_target = torch.tensor([[2.0, 4.0, 0.0], [6.0, 1.0, 0.5], [7.0, 8.0, 9.0]])
    gamma = 0.5
    targets = double_dqn_targets(rewards, terminated, next_q_online, next_q_target, gamma)
    # row 0: a' = 0 (online), Q_target(s', 0) = 2 -> 1 + 0.5 * 2 = 2.0
    # row 1: a' = 2 (online), Q_target(s', 2) = 0.5 -> 0 + 0.5 * 0.5 = 0.25
    # row 2: terminal -> -1
    assert targets.tolist() == pytest.approx([2.0, 0.25, -1.0])
    # Plain DQN (Mnih et al., 2015) takes the target net's max: 1 + 0.5 * 4 = 3.0 and 0.5 * 6 = 3.0.
    plain = rewards + gamma * (1.0 - terminated) * next_q_target.max(dim=1).values
    assert plain.tolist() == pytest.approx([3.0, 3.0, -1.0])
    assert not torch.allclose(targets, plain)


def test_td_loss_uses_the_taken_actions_and_huber() -> None:
    q_values = torch.tensor([[1.0, 5.0], [0.0, 0.0]], requires_grad=True)
    actions = torch.tensor([1, 0])
    targets = torch.tensor([5.5, 3.0])
    loss = td_loss(q_values, actions, targets)
    # errors 0.5 (quadratic: 0.125) and 3.0 (linear: 2.5) -> mean 1.3125
    assert loss.item() == pytest.approx(1.3125)
    loss.backward()  # type: ignore[no-untyped-call]
    assert q_values.grad is not None
    assert q_values.grad[0, 0].item() == 0.0  # untaken action gets no gradient


def test_weighted_td_loss_scales_each_huber_term_by_its_weight_and_returns_abs_td_errors() -> None:
    q_values = torch.tensor([[1.0, 5.0], [0.0, 0.0], [2.0, 0.0]], requires_grad=True)
    actions = torch.tensor([1, 0, 0])
    targets = torch.tensor([5.5, 3.0, 1.0])
    weights = torch.tensor([1.0, 0.5, 0.0])
    loss, td_errors = weighted_td_loss(q_values, actions, targets, weights)
    # Huber terms 0.125 (error 0.5), 2.5 (error 3) and 0.5 (error -1): (0.125 + 1.25 + 0) / 3
    assert loss.item() == pytest.approx(1.375 / 3)
    assert td_errors.tolist() == pytest.approx([0.5, 3.0, 1.0])
    assert not td_errors.requires_grad
    loss.backward()  # type: ignore[no-untyped-call]
    assert q_values.grad is not None
    assert q_values.grad[2, 0].item() == 0.0  # a zero weight: no gradient from that transition
    assert q_values.grad[1, 0].item() == pytest.approx(-0.5 / 3)  # Huber slope -1, times 0.5, over 3


def test_weighted_td_loss_with_unit_weights_is_td_loss() -> None:
    q_values = torch.tensor([[1.0, 5.0], [0.0, 0.0]])
    actions = torch.tensor([1, 0])
    targets = torch.tensor([5.5, 3.0])
    loss, _ = weighted_td_loss(q_values, actions, targets, torch.ones(2))
    assert loss.item() == pytest.approx(td_loss(q_values, actions, targets).item())


def test_linear_schedule() -> None:
    assert linear_schedule(0, 1.0, 0.1, 100) == pytest.approx(1.0)
    assert linear_schedule(50, 1.0, 0.1, 100) == pytest.approx(0.55)
    assert linear_schedule(10_000, 1.0, 0.1, 100) == pytest.approx(0.1)


def test_ape_x_epsilons_span_base_to_base_to_the_one_plus_alpha() -> None:
    epsilons = [ape_x_epsilon(index, 8) for index in range(8)]
    assert epsilons[0] == pytest.approx(0.4)
    assert epsilons[-1] == pytest.approx(0.4**8)
    assert epsilons[3] == pytest.approx(0.4 ** (1 + 7 * 3 / 7))
    assert epsilons == sorted(epsilons, reverse=True)


def test_a_lone_ape_x_agent_explores_at_the_base_rate() -> None:
    assert ape_x_epsilon(0, 1) == 0.4
    assert ape_x_epsilon(5, 1, base=0.3) == 0.3


def test_an_index_past_the_hive_wraps_around() -> None:
    assert ape_x_epsilon(4, 4) == ape_x_epsilon(0, 4)
    assert ape_x_epsilon(7, 4) == ape_x_epsilon(3, 4)


def test_an_index_past_the_hive_is_reported_with_the_setting_to_change() -> None:
    assert ape_x_wrap_warning(3, 4) is None
    warning = ape_x_wrap_warning(5, 4)
    assert warning is not None
    assert "CONFIG_hive_size=4" in warning and "agent 1's" in warning
    assert ape_x_wrap_warning(1, 1) is not None  # compose's default N=1 with a second replica


def test_ape_x_alpha_zero_gives_every_agent_the_base() -> None:
    assert [ape_x_epsilon(index, 4, base=0.2, alpha=0.0) for index in range(4)] == pytest.approx([0.2] * 4)
