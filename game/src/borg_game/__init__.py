"""Borg-DQN game service: a Double-DQN agent that learns from the hive's shared memory."""

__version__ = "0.1.0"
