"""The Double DQN update as pure functions of tensors."""

from __future__ import annotations

import torch
from torch.nn import functional


def double_dqn_targets(
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    next_q_online: torch.Tensor,
    next_q_target: torch.Tensor,
    gamma: float | torch.Tensor,
) -> torch.Tensor:
    """TD targets of Double DQN (van Hasselt et al., 2016).

    The online network picks the greedy next action, the target network values it: this
    decoupling removes the overestimation of max over noisy target-network values (plain
    DQN would use `next_q_target.max(1)`). For n-step transitions `rewards` are their
    returns and `gamma` each row's gamma ** span (`n_step_returns`).
    """
    greedy_next_actions = next_q_online.argmax(dim=1, keepdim=True)
    next_values = next_q_target.gather(1, greedy_next_actions).squeeze(1)
    # A terminal next state has no future: only the reward counts.
    return rewards + gamma * (1.0 - terminated) * next_values


def n_step_returns(
    rewards: torch.Tensor, later_rewards: torch.Tensor, spans: torch.Tensor, gamma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's n-step return r_0 + gamma r_1 + ... + gamma^(n-1) r_(n-1) and the discount
    gamma^n of its next state's value (Sutton 1988; Rainbow and Ape-X use n = 3).

    `later_rewards` is zero-padded past each row's span, so padding adds nothing to the sum;
    rewards are used as given (clip them first).
    """
    powers = gamma ** torch.arange(1, later_rewards.shape[1] + 1, dtype=rewards.dtype, device=rewards.device)
    returns = rewards + later_rewards @ powers
    return returns, gamma ** spans.to(rewards.dtype)


def taken_action_values(q_values: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Q(s, a) of the actions taken, one per row."""
    return q_values.gather(1, actions.unsqueeze(1)).squeeze(1)


def td_loss(q_values: torch.Tensor, actions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Huber loss between Q(s, a) of the actions taken and their (constant) TD targets."""
    chosen_q = taken_action_values(q_values, actions)
    # Huber: quadratic near zero, linear for large errors, so rare big TD errors do not explode gradients.
    return functional.smooth_l1_loss(chosen_q, targets.detach())


def weighted_td_loss(
    q_values: torch.Tensor, actions: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prioritized replay's loss: the mean of each transition's Huber loss times its
    importance-sampling weight, and each transition's |TD error| (detached) for its new priority."""
    chosen_q = taken_action_values(q_values, actions)
    td_errors = targets.detach() - chosen_q
    # The weights undo the bias of drawing high-error transitions more often (Schaul et al. 2016).
    loss = (functional.smooth_l1_loss(chosen_q, targets.detach(), reduction="none") * weights).mean()
    return loss, td_errors.detach().abs()


def linear_schedule(step: int, start: float, end: float, decay_steps: int) -> float:
    """A value moved linearly from `start` (step 0) to `end` (step `decay_steps`), then held:
    the exploration rate, the learning rate, prioritized replay's beta."""
    fraction = min(1.0, step / decay_steps)
    return start + fraction * (end - start)


def learning_rate_at(step: int, start: float, end: float, decay_steps: int) -> float:
    """CONFIG_learning_rate at `step`: `start` throughout when decay_steps is 0, else linear to `end`."""
    return start if decay_steps == 0 else linear_schedule(step, start, end, decay_steps)


def ape_x_epsilon(agent_index: int, hive_size: int, base: float = 0.4, alpha: float = 7.0) -> float:
    """Agent i of N's constant exploration rate in Ape-X (Horgan et al., 2018): base ** (1 + alpha * i / (N - 1)).

    Agent 0 explores most (`base`), agent N-1 least (`base ** (1 + alpha)`); a lone agent gets
    `base`. An index past the hive (a replica that joined beyond N) wraps around (i mod N), so
    it gets one of the hive's rates rather than a vanishing one.
    """
    if hive_size <= 1:
        return base
    position = agent_index % hive_size
    return float(base ** (1.0 + alpha * position / (hive_size - 1)))


def ape_x_wrap_warning(agent_index: int, hive_size: int) -> str | None:
    """What to tell the user when agent i is past the hive's N (else None).

    Under compose, N is CONFIG_hive_size in .env, set by hand next to `--scale game=N`; when
    it is left at 1 or below the scale, agents share rates and the spread Ape-X relies on is lost.
    """
    if agent_index < hive_size:
        return None
    return (
        f"agent index {agent_index} is past CONFIG_hive_size={hive_size}: its Ape-X epsilon wraps around to "
        f"agent {agent_index % hive_size}'s; set CONFIG_hive_size to the number of agents (--scale game=N)"
    )
