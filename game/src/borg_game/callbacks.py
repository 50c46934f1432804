"""The agent loop's extension point: callbacks told what the loop does, as SB3's are.

Subclass `AgentCallback` and override what you need; `run_agent` calls every callback of its
services in order. The status board is one; benchmarks time the loop with another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # status.py's StatusBoard is a callback itself
    from pathlib import Path

    from borg_game.status import AgentStatus
    from borg_game.telemetry import EpisodeRecord, EvalRecord, TrainRecord


class AgentCallback:
    """Hears of the loop's events; every method does nothing unless overridden."""

    def on_episode(self, record: EpisodeRecord) -> None:
        """An episode ended."""

    def on_train(self, record: TrainRecord) -> None:
        """Training metrics were logged (every CONFIG_train_log_interval updates)."""

    def on_eval(self, record: EvalRecord) -> None:
        """An evaluation finished."""

    def on_checkpoint(self, path: Path) -> None:
        """A checkpoint was written."""

    def on_report(self, status: AgentStatus) -> None:
        """The agent's status was made (every CONFIG_status_interval seconds)."""
