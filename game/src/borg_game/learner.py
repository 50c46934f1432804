"""The Double-DQN learner: online network, target network, optimizer, and one TD update."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from borg_game.ddqn import double_dqn_targets, n_step_returns, td_loss, weighted_td_loss
from borg_game.networks import build_q_network
from borg_game.replay import ReplayBatch
from borg_game.settings import Settings


def select_device(preference: str) -> torch.device:
    """CUDA when asked for or when `auto` finds it, else CPU."""
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


@dataclass
class TrainStats:
    """What one gradient update measured."""

    loss: float
    mean_q: float
    grad_norm: float
    td_errors: npt.NDArray[np.float32] | None = None  # |TD error| per row, for a batch with weights


class DoubleDQNLearner:
    """The online network, its target copy and the optimizer; `update` is one TD step."""

    def __init__(
        self, observation_shape: tuple[int, ...], num_actions: int, settings: Settings, device: torch.device
    ) -> None:
        self.settings = settings
        self.device = device
        self.q_network = build_q_network(observation_shape, num_actions, settings.mlp_hidden_sizes).to(device)
        self.target_network = build_q_network(observation_shape, num_actions, settings.mlp_hidden_sizes).to(device)
        self.target_network.load_state_dict(self.q_network.state_dict())
        self.target_network.requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.q_network.parameters(), lr=settings.learning_rate, eps=settings.adam_eps)

    def set_learning_rate(self, rate: float) -> None:
        """The step size of the next updates (a decaying learning rate sets it every round)."""
        for group in self.optimizer.param_groups:
            group["lr"] = rate

    @torch.inference_mode()  # cheaper than no_grad: no version counters, no autograd bookkeeping
    def greedy_action(self, observation: npt.NDArray[Any]) -> int:
        """argmax_a Q(s, a) of the online network."""
        tensor = torch.as_tensor(observation, device=self.device).unsqueeze(0)
        return int(self.q_network(tensor).argmax(dim=1).item())

    def update(self, batch: ReplayBatch) -> TrainStats:
        """One gradient step of Double DQN on a minibatch of hive transitions."""
        device = self.device
        observations = torch.as_tensor(batch.observations, device=device)
        next_observations = torch.as_tensor(batch.next_observations, device=device)
        actions = torch.as_tensor(batch.actions, device=device)
        rewards = torch.as_tensor(batch.rewards, device=device)
        if self.settings.clip_rewards:
            rewards = rewards.sign()  # learning sees sign(r); logged returns stay the real score
        discounts: float | torch.Tensor = self.settings.gamma
        if batch.later_rewards is not None and batch.spans is not None:
            later_rewards = torch.as_tensor(batch.later_rewards, device=device)
            if self.settings.clip_rewards:
                later_rewards = later_rewards.sign()  # step by step, as a one-step learner would
            rewards, discounts = n_step_returns(
                rewards, later_rewards, torch.as_tensor(batch.spans, device=device), self.settings.gamma
            )
        terminated = torch.as_tensor(batch.terminated, device=device)
        with torch.no_grad():
            # Online net chooses a' on s', target net evaluates it: the Double DQN target.
            targets = double_dqn_targets(
                rewards,
                terminated,
                next_q_online=self.q_network(next_observations),
                next_q_target=self.target_network(next_observations),
                gamma=discounts,
            )
        q_values = self.q_network(observations)
        td_errors = None
        if batch.weights is None:
            loss = td_loss(q_values, actions, targets)
        else:
            # Prioritized draws: importance-sampling weights in the loss, |TD errors| back out.
            weights = torch.as_tensor(batch.weights, device=device)
            loss, td_errors = weighted_td_loss(q_values, actions, targets, weights)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        grad_norm = nn.utils.clip_grad_norm_(self.q_network.parameters(), self.settings.max_grad_norm)
        self.optimizer.step()
        return TrainStats(
            loss=float(loss.item()),
            mean_q=float(q_values.detach().mean().item()),
            grad_norm=float(grad_norm.item()),
            td_errors=None if td_errors is None else td_errors.cpu().numpy(),
        )

    def update_target(self) -> None:
        """Copy (tau = 1) or Polyak-average (tau < 1) the online weights into the target."""
        tau = self.settings.tau
        with torch.no_grad():
            for target, online in zip(self.target_network.parameters(), self.q_network.parameters(), strict=True):
                if tau >= 1.0:
                    target.copy_(online)
                else:
                    target.lerp_(online, tau)
