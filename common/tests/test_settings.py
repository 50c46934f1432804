from __future__ import annotations

import pytest
from pydantic import ValidationError

from borg_common.settings import (
    MonitorSettings,
    SharedSettings,
    config_values,
    describe_validation_error,
    env_example_lines,
    env_value,
    monitor_only_keys,
)


def test_config_values_are_keyed_by_lower_case_name_without_the_prefix() -> None:
    source = {"CONFIG_Seed": "3", "config_run_id": "r", "PATH": "/bin"}
    assert config_values(source) == {"seed": "3", "run_id": "r"}
    assert config_values(source, fields=["run_id"]) == {"run_id": "r"}


def test_a_validation_error_names_the_key_the_value_and_its_meaning() -> None:
    with pytest.raises(ValidationError) as caught:
        SharedSettings.model_validate({"replay_capacity": "0"})
    text = describe_validation_error(caught.value, SharedSettings)
    assert text.startswith("CONFIG_replay_capacity='0': Input should be greater than or equal to 1")
    assert "[Transitions kept in Redis (LTRIM bound).]" in text


def test_an_empty_kafka_bootstrap_servers_means_no_kafka() -> None:
    assert SharedSettings.model_validate({"kafka_bootstrap_servers": ""}).kafka_bootstrap_servers is None


def test_the_monitors_own_keys_are_those_the_agents_do_not_read() -> None:
    assert monitor_only_keys() == ["poll_interval", "monitoring_topic"]
    assert set(SharedSettings.model_fields) < set(MonitorSettings.model_fields)


def test_env_values_are_written_as_dotenv_reads_them() -> None:
    assert [env_value(None), env_value(True), env_value((64, 64)), env_value(0.5)] == ["", "true", "64,64", "0.5"]


def test_env_example_lines_give_the_doc_then_the_commented_default() -> None:
    assert env_example_lines(MonitorSettings, ["poll_interval"]) == [
        "# Seconds between two readings of Redis.",
        "# CONFIG_poll_interval=5.0",
    ]
