"""What an agent reports of itself: its phase through a short real run, its status as JSON."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import redis

from borg_game.agent import AgentServices, RunResult, run_agent
from borg_game.callbacks import AgentCallback
from borg_game.redis_server import EmbeddedRedis
from borg_game.replay_memory import build_replay_memory
from borg_game.settings import Settings, load_settings
from borg_game.status import AgentPhase, AgentStatus, StatusBoard, read_statuses
from borg_game.telemetry import EvalRecord, TrainingLog, TrainRecord
from tests.test_prioritized_replay import push


def cartpole_settings(redis_url: str, tmp_path: Path, **config: str) -> Settings:
    """A small CartPole agent's settings: `config` holds CONFIG_ keys without the prefix."""
    values = {
        "CONFIG_redis_url": redis_url,
        "CONFIG_env_id": "CartPole-v1",
        "CONFIG_checkpoint_interval": "100000",
        "CONFIG_mlp_hidden_sizes": "16",
        "CONFIG_model_store": str(tmp_path / "models"),
        "CONFIG_tensorboard_dir": "",
    }
    values.update({f"CONFIG_{key}": value for key, value in config.items()})
    return load_settings(values, env_file=None)


def run_cartpole_agent(
    settings: Settings, client: redis.Redis, callbacks: list[AgentCallback], stop: threading.Event
) -> RunResult:
    """One real run of agent-0 on its own writer and mirror, the writer closed afterwards."""
    memory = build_replay_memory(settings, client)
    services = AgentServices(
        writer=memory.writer,
        sampler=memory.sampler,
        training_log=TrainingLog(settings.run_id, "agent-0", []),
        callbacks=callbacks,
    )
    try:
        return run_agent(settings, "agent-0", services, stop)
    finally:
        memory.writer.close()


class Recorder(AgentCallback):
    """What the agent reported and logged of its training, in order."""

    def __init__(self) -> None:
        self.statuses: list[AgentStatus] = []
        self.train_records: list[TrainRecord] = []

    def on_report(self, status: AgentStatus) -> None:
        self.statuses.append(status)

    def on_train(self, record: TrainRecord) -> None:
        self.train_records.append(record)


def test_agent_reports_filling_then_learning_and_its_evaluations(
    tmp_path: Path, redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    settings = cartpole_settings(
        redis_server.url,
        tmp_path,
        run_id="status-test",
        total_steps="700",
        learning_starts="300",
        train_frequency="50",
        gradient_steps="1",
        eval_interval="400",
        eval_episodes="1",
        status_interval="0.001",
    )
    recorder = Recorder()
    run_cartpole_agent(
        settings, redis_client, [recorder, StatusBoard(redis_client, settings.run_id, "agent-0")], threading.Event()
    )

    phases = [(status.phase, status.step) for status in recorder.statuses]
    assert phases[0] == (AgentPhase.FILLING, 1)
    assert all(phase is AgentPhase.FILLING for phase, step in phases if step < 300)
    assert all(phase is AgentPhase.LEARNING for phase, step in phases if step >= 300 and step != 400)
    evaluating = [index for index, (phase, _) in enumerate(phases) if phase is AgentPhase.EVALUATING]
    # Said when it starts, and again while it plays (a status expires after 30 s).
    assert evaluating and {phases[index][1] for index in evaluating} == {400}
    assert evaluating == list(range(evaluating[0], evaluating[-1] + 1))
    after = recorder.statuses[evaluating[-1] + 1]  # reported afresh, with the evaluation's score
    assert (after.phase, after.step) == (AgentPhase.LEARNING, 400) and after.best_eval is not None
    assert all(recorder.statuses[index].best_eval is None for index in evaluating)
    assert all(status.total_steps == 700 and status.learning_starts == 300 for status in recorder.statuses)
    assert recorder.statuses[-1].steps_per_second > 0
    assert read_statuses(redis_client, "status-test") == [recorder.statuses[-1]]


def test_train_records_carry_the_learning_rate_of_its_linear_decay(
    tmp_path: Path, redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    settings = cartpole_settings(
        redis_server.url,
        tmp_path,
        total_steps="700",
        learning_starts="100",
        train_frequency="1",
        gradient_steps="1",
        train_log_interval="25",
        learning_rate="0.001",
        learning_rate_end="0.0001",
        learning_rate_decay_steps="400",
        eval_interval="0",
    )
    # Transitions of CartPole's shape already in the hive's memory: an update every step from
    # learning_starts on, however far behind the agent's own writer thread runs.
    push(redis_client, range(200), key=settings.env_replay_key, counter=settings.env_push_counter_key)
    recorder = Recorder()
    run_cartpole_agent(settings, redis_client, [recorder], threading.Event())

    steps = [record.agent_step for record in recorder.train_records]
    assert min(steps) < 400 < max(steps), steps  # records from the decay and from after it
    for record in recorder.train_records:
        expected = 1e-3 + min(1.0, record.agent_step / 400) * (1e-4 - 1e-3)
        assert record.learning_rate == pytest.approx(expected), record.agent_step


class StopWhenEvaluating(AgentCallback):
    """Sets the agent's stop event as an evaluation starts, as SIGTERM would; counts evaluations."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.evaluations = 0

    def on_report(self, status: AgentStatus) -> None:
        if status.phase is AgentPhase.EVALUATING:
            self.stop.set()

    def on_eval(self, record: EvalRecord) -> None:
        self.evaluations += 1


def test_a_stop_during_an_evaluation_abandons_it_and_writes_the_final_checkpoint(
    tmp_path: Path, redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    settings = cartpole_settings(
        redis_server.url,
        tmp_path,
        run_id="stop-test",
        total_steps="1000",
        learning_starts="100",
        eval_interval="300",
        eval_episodes="50",
    )
    stop = threading.Event()
    stopper = StopWhenEvaluating(stop)
    result = run_cartpole_agent(settings, redis_client, [stopper], stop)

    assert stop.is_set() and stopper.evaluations == 0, "the cut-short evaluation was not reported"
    assert result.steps == 300 and result.last_eval is None
    assert result.checkpoint is not None and result.checkpoint.exists()
    assert not list((tmp_path / "models").rglob("best-*.pt")), "no best model from an abandoned evaluation"


def test_status_keeps_its_phase_through_json() -> None:
    status = AgentStatus("agent-3", phase=AgentPhase.EVALUATING, step=12, best_eval=20.5, total_steps=100)
    assert json.loads(status.to_json())["phase"] == "evaluating"
    assert AgentStatus.from_json(status.to_json()) == status


def test_status_from_a_newer_agent_leaves_unknown_fields_out_and_names_an_unknown_phase() -> None:
    assert AgentStatus.from_json('{"agent_id": "agent-0", "step": 5, "novelty": 1}') == AgentStatus("agent-0", step=5)
    with pytest.raises(ValueError, match="'pondering' is not a valid AgentPhase"):
        AgentStatus.from_json('{"agent_id": "agent-0", "phase": "pondering"}')
