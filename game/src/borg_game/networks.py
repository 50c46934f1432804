"""Q-networks: the Nature CNN for stacked frames, an MLP for vector observations."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class NatureCNN(nn.Module):
    """The DQN network of Mnih et al. (2015) on uint8 frame stacks, scaled to [0, 1] inside."""

    def __init__(self, in_channels: int, num_actions: int, frame_size: int = 84) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, kernel_size=8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, in_channels, frame_size, frame_size)).shape[1]
        self.head = nn.Sequential(nn.Linear(flat, 512), nn.ReLU(), nn.Linear(512, num_actions))

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        """Q-values of every action, shape (batch, num_actions)."""
        # Frames travel as uint8 (4x less host-to-device traffic); the scaling happens here.
        q_values: torch.Tensor = self.head(self.features(observations.float() / 255.0))
        return q_values


class MLP(nn.Module):
    """A fully connected Q-network for vector observations (CartPole and friends)."""

    def __init__(self, input_size: int, num_actions: int, hidden_sizes: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = input_size
        for size in hidden_sizes:
            layers += [nn.Linear(previous, size), nn.ReLU()]
            previous = size
        layers.append(nn.Linear(previous, num_actions))
        self.layers = nn.Sequential(*layers)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        """Q-values of every action, shape (batch, num_actions)."""
        q_values: torch.Tensor = self.layers(observations.float().flatten(start_dim=1))
        return q_values


def build_q_network(observation_shape: Sequence[int], num_actions: int, hidden_sizes: Sequence[int]) -> nn.Module:
    """The Nature CNN for (stack, height, width) image observations, else an MLP."""
    if len(observation_shape) == 3:
        channels, height, width = observation_shape
        if height != width:
            raise ValueError(f"the Nature CNN expects square frames, got {height}x{width}")
        return NatureCNN(channels, num_actions, frame_size=height)
    input_size = 1
    for dimension in observation_shape:
        input_size *= dimension
    return MLP(input_size, num_actions, hidden_sizes)
