from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from borg_game.settings import Settings, SettingsError, env_example, load_settings
from tests.conftest import REPO_ROOT, agent_environment


def test_keys_are_case_insensitive() -> None:
    lower = load_settings({"CONFIG_seed": "7", "CONFIG_env_id": "CartPole-v1"}, env_file=None)
    upper = load_settings({"CONFIG_SEED": "7", "CONFIG_ENV_ID": "CartPole-v1"}, env_file=None)
    assert lower.seed == upper.seed == 7
    assert lower.env_id == upper.env_id == "CartPole-v1"


def test_unknown_key_is_named_with_a_suggestion() -> None:
    with pytest.raises(SettingsError, match=r"CONFIG_learning_rat\b.*did you mean CONFIG_learning_rate"):
        load_settings({"CONFIG_learning_rat": "0.1"}, env_file=None)


def test_bad_value_names_key_and_expectation() -> None:
    with pytest.raises(SettingsError, match=r"CONFIG_replay_capacity='many'.*valid integer"):
        load_settings({"CONFIG_replay_capacity": "many"}, env_file=None)
    with pytest.raises(SettingsError, match=r"CONFIG_gamma=.*less than or equal to 1"):
        load_settings({"CONFIG_gamma": "1.5"}, env_file=None)


def test_inconsistent_epsilon_schedule_is_refused() -> None:
    with pytest.raises(SettingsError, match="epsilon_end"):
        load_settings({"CONFIG_epsilon_start": "0.1", "CONFIG_epsilon_end": "0.5"}, env_file=None)


@pytest.mark.parametrize(
    ("key", "value", "expectation"),
    [
        ("priority_alpha", "1.5", "less than or equal to 1"),
        ("priority_beta_start", "-0.1", "greater than or equal to 0"),
        ("priority_epsilon", "0", "greater than 0"),
        ("priority_beta_steps", "0", "greater than or equal to 1"),
    ],
)
def test_prioritized_replay_settings_out_of_range_name_the_key(key: str, value: str, expectation: str) -> None:
    with pytest.raises(SettingsError, match=rf"CONFIG_{key}='{value}'.*{expectation}"):
        load_settings({f"CONFIG_{key}": value}, env_file=None)


def test_prioritized_replay_on_the_direct_sampler_is_refused() -> None:
    with pytest.raises(SettingsError, match="prioritized_replay needs replay_sampling=mirror"):
        load_settings({"CONFIG_prioritized_replay": "true", "CONFIG_replay_sampling": "direct"}, env_file=None)
    assert load_settings({"CONFIG_prioritized_replay": "true"}, env_file=None).prioritized_replay


def test_env_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("CONFIG_seed=11\nCONFIG_batch_size=16\nKAFKA_VERSION=4.1.0\n")
    settings = load_settings({"CONFIG_SEED": "12"}, env_file=env_file)
    assert settings.seed == 12  # environment over .env
    assert settings.batch_size == 16  # from .env
    # Keys without the CONFIG_ prefix belong to compose, not to the agent.


def test_unknown_key_in_env_file_is_named(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("CONFIG_batchsize=16\n")
    with pytest.raises(SettingsError, match=r"CONFIG_batchsize in .*\.env"):
        load_settings({}, env_file=env_file)


def test_monitor_keys_in_the_shared_env_are_not_typos() -> None:
    settings = load_settings({"CONFIG_poll_interval": "5"}, env_file=None)
    assert settings.replay_key == "transitions"


def test_list_setting_parses_from_text() -> None:
    assert load_settings({"CONFIG_mlp_hidden_sizes": "64, 32"}, env_file=None).mlp_hidden_sizes == (64, 32)


def test_every_field_is_documented() -> None:
    undocumented = [name for name, info in Settings.model_fields.items() if not info.description]
    assert undocumented == []


def test_env_example_lists_every_setting_with_its_default() -> None:
    text = (REPO_ROOT / ".env.example").read_text()
    assert env_example() in text, "regenerate the block: python -m borg_game.settings"
    listed = set(re.findall(r"^# CONFIG_(\w+)=", text, flags=re.MULTILINE))
    assert set(Settings.model_fields) <= listed


def test_agent_exits_at_once_on_unknown_key(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "borg_game"],
        cwd=tmp_path,
        env=agent_environment(env_id="CartPole-v1", replay_capacty="10"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    assert "CONFIG_replay_capacty" in completed.stderr
    assert "CONFIG_replay_capacity" in completed.stderr  # the suggestion


def test_cartpole_gets_its_preset_and_explicit_values_win() -> None:
    cartpole = load_settings({"CONFIG_env_id": "CartPole-v1"}, env_file=None)
    assert cartpole.learning_rate == 5e-4 and cartpole.tau == 0.005 and not cartpole.clip_rewards
    overridden = load_settings({"CONFIG_env_id": "CartPole-v1", "CONFIG_LEARNING_RATE": "0.01"}, env_file=None)
    assert overridden.learning_rate == 0.01 and overridden.batch_size == 64
    pong = load_settings({}, env_file=None)
    assert pong.learning_rate == 1e-4 and pong.train_frequency == 4


def test_an_agents_own_overrides_apply_to_it_alone() -> None:
    environ = {
        "CONFIG_env_id": "CartPole-v1",
        "CONFIG_AGENT1__learning_rate": "0.01",
        "CONFIG_agent1__EVAL_EPSILON": "0.5",
    }
    first = load_settings(environ, env_file=None, agent_index=0)
    second = load_settings(environ, env_file=None, agent_index=1)
    assert (first.learning_rate, first.eval_epsilon) == (5e-4, 0.0)  # the CartPole preset
    assert (second.learning_rate, second.eval_epsilon, second.agent_index) == (0.01, 0.5, 1)


def test_overrides_follow_the_configured_index_and_may_switch_the_preset() -> None:
    environ = {"CONFIG_agent_index": "2", "CONFIG_AGENT2__env_id": "CartPole-v1"}
    settings = load_settings(environ, env_file=None)
    assert settings.env_id == "CartPole-v1" and settings.tau == 0.005


def test_an_unknown_override_key_is_named_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(
        SettingsError, match=r"CONFIG_AGENT1__learning_rat\b.*did you mean CONFIG_AGENT1__learning_rate"
    ):
        load_settings({"CONFIG_AGENT1__learning_rat": "0.1"}, env_file=None)
    env_file = tmp_path / ".env"
    env_file.write_text("CONFIG_AGENT0__agent_index=3\n")  # the index an override is chosen by
    with pytest.raises(SettingsError, match=r"unknown setting CONFIG_AGENT0__agent_index in .*\.env"):
        load_settings({}, env_file=env_file)


def test_a_bad_override_value_fails_every_agent_naming_the_index() -> None:
    with pytest.raises(SettingsError, match=r"CONFIG_AGENT3__ overrides: CONFIG_gamma=.*less than or equal to 1"):
        load_settings({"CONFIG_AGENT3__gamma": "2"}, env_file=None, agent_index=0)


def test_the_default_agent_id_is_stable_across_hosts() -> None:
    assert load_settings({}, env_file=None, agent_index=4).resolved_agent_id() == "agent-4"
    named = load_settings({"CONFIG_agent_id": "lead"}, env_file=None, agent_index=4)
    assert named.resolved_agent_id() == "lead"


def test_replay_keys_are_scoped_by_environment() -> None:
    settings = load_settings({"CONFIG_env_id": "CartPole-v1"}, env_file=None)
    assert (settings.env_replay_key, settings.env_push_counter_key) == (
        "transitions:CartPole-v1",
        "transitions:pushed:CartPole-v1",
    )
