"""Borg-DQN memory monitor: reads the hive's Redis replay memory and publishes its statistics."""
