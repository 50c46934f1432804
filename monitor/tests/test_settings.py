from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from borg_monitor.settings import MonitorSettings, SettingsError, env_example, load_settings
from tests.conftest import REPO_ROOT, monitor_environment


def test_keys_are_case_insensitive() -> None:
    lower = load_settings({"CONFIG_poll_interval": "2.5", "CONFIG_replay_key": "replay"}, env_file=None)
    upper = load_settings({"CONFIG_POLL_INTERVAL": "2.5", "CONFIG_REPLAY_KEY": "replay"}, env_file=None)
    assert lower.poll_interval == upper.poll_interval == 2.5
    assert lower.replay_key == upper.replay_key == "replay"


def test_the_agents_keys_in_the_shared_environment_are_left_to_the_agents() -> None:
    settings = load_settings(
        {"CONFIG_env_id": "CartPole-v1", "CONFIG_learning_rate": "0.1", "CONFIG_total_steps": "many"}, env_file=None
    )
    assert settings.poll_interval == 5.0


def test_bad_value_names_the_key_and_the_expectation() -> None:
    with pytest.raises(SettingsError, match=r"CONFIG_poll_interval='soon'.*valid number.*Seconds between"):
        load_settings({"CONFIG_poll_interval": "soon"}, env_file=None)
    with pytest.raises(SettingsError, match=r"CONFIG_replay_capacity='0'.*greater than or equal to 1"):
        load_settings({"CONFIG_replay_capacity": "0"}, env_file=None)


def test_empty_bootstrap_servers_means_no_kafka() -> None:
    assert load_settings({"CONFIG_kafka_bootstrap_servers": ""}, env_file=None).kafka_bootstrap_servers is None


def test_env_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("CONFIG_poll_interval=7\nCONFIG_monitoring_topic=memory\nCONFIG_seed=3\nKAFKA_VERSION=4.1.0\n")
    settings = load_settings({"CONFIG_POLL_INTERVAL": "9"}, env_file=env_file)
    assert settings.poll_interval == 9.0
    assert settings.monitoring_topic == "memory"


def test_every_field_is_documented() -> None:
    assert [name for name, info in MonitorSettings.model_fields.items() if not info.description] == []


def test_env_example_holds_the_monitor_block() -> None:
    text = (REPO_ROOT / ".env.example").read_text()
    assert env_example() in text, "regenerate the block: python -m borg_monitor.settings"
    listed = set(re.findall(r"^# CONFIG_(\w+)=", text, flags=re.MULTILINE))
    assert set(MonitorSettings.model_fields) <= listed


def test_monitor_exits_with_2_naming_the_bad_key(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "borg_monitor"],
        cwd=tmp_path,
        env=monitor_environment(poll_interval="-1", learning_rate="0.5"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    assert "CONFIG_poll_interval" in completed.stderr
    assert "learning_rate" not in completed.stderr
