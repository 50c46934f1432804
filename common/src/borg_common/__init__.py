"""Borg-DQN shared library: what the game agents and the memory monitor both need."""
