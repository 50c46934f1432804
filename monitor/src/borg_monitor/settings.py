"""The monitor's settings, read from `CONFIG_*` variables and `.env`.

The model itself (`MonitorSettings`: the keys shared with the agents plus the monitor's own
`poll_interval` and `monitoring_topic`) is part of the hive's settings contract in
`borg_common.settings`. The monitor reads only its keys and leaves every other `CONFIG_` key
alone: the agents reject unknown keys and typos with a hint, the monitor does not
second-guess them. A bad value of a key the monitor reads stops it with a message that names
the key.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping
from pathlib import Path

from borg_common.settings import (
    ENV_PREFIX,
    MonitorSettings,
    SettingsError,
    SharedSettings,
    config_values,
    env_example_lines,
    monitor_only_keys,
    validate_settings,
)
from dotenv import dotenv_values

__all__ = ["MonitorSettings", "SettingsError", "env_example", "load_settings"]


def load_settings(environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")) -> MonitorSettings:
    """Read settings from `environ` (default: the process environment) over `env_file`.

    Raises SettingsError, naming the key, for invalid values.
    """
    environ = os.environ if environ is None else environ
    fields = MonitorSettings.model_fields
    merged = config_values(dotenv_values(env_file), fields) if env_file is not None and env_file.is_file() else {}
    merged.update(config_values(environ, fields))
    return validate_settings(MonitorSettings, merged)


def env_example() -> str:
    """The monitor's block of `.env.example`: its own keys with doc and default, then the shared ones."""
    lines = [
        "# --- memory monitor: python -m borg_monitor.settings prints this block ---",
        "# The monitor reads the same file; its own keys, with their defaults:",
        *env_example_lines(MonitorSettings, monitor_only_keys()),
    ]
    shared = ", ".join(f"{ENV_PREFIX}{name}" for name in SharedSettings.model_fields)
    wrapped = textwrap.wrap(f"It also reads these agents' keys (above), with the same meaning: {shared}.", width=98)
    lines.extend(f"# {line}" for line in wrapped)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(env_example(), end="")
