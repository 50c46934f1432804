"""Test and development harness for Borg-DQN: real servers (Kafka, search) on loopback."""
