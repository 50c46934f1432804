"""One Double-DQN agent of the hive: it plays, shares every transition, learns from the hive.

`run_agent` is the loop, read top to bottom as CleanRL's: act, store, learn, evaluate,
checkpoint, report. Each step is a method of `Agent`, which holds what the loop works with;
`AgentServices` is the I/O it talks to, built from settings by the entry point.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from loguru import logger

from borg_game.callbacks import AgentCallback
from borg_game.checkpoint import AgentState, Checkpointer, compatibility_of
from borg_game.codec import ObservationSpec, Transition
from borg_game.ddqn import ape_x_epsilon, ape_x_wrap_warning, learning_rate_at, linear_schedule
from borg_game.envs import make_env
from borg_game.eval_videos import EvaluationVideos
from borg_game.evaluation import evaluate
from borg_game.learner import DoubleDQNLearner, select_device
from borg_game.n_step import NStepFolder
from borg_game.prioritized import PrioritizedIndexSampler
from borg_game.replay import ReplaySampler
from borg_game.replay_writer import ReplayWriter
from borg_game.settings import Settings
from borg_game.status import AgentPhase, AgentStatus
from borg_game.step_rate import RATE_WINDOW_SECONDS, WindowedRate
from borg_game.telemetry import EpisodeRecord, EvalRecord, TrainingLog, TrainRecord


@dataclass
class AgentServices:
    """The I/O the agent loop talks to, built in `main()` from settings."""

    writer: ReplayWriter
    sampler: ReplaySampler
    training_log: TrainingLog
    callbacks: Sequence[AgentCallback] = field(default_factory=list)
    priorities: PrioritizedIndexSampler | None = None  # the sampler's, when it draws by priority


@dataclass
class RunResult:
    """What a finished (or stopped) run reports."""

    steps: int
    episodes: int
    updates: int
    last_eval: float | None
    checkpoint: Path | None = None


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (the envs are seeded at reset)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_agent(settings: Settings, agent_id: str, services: AgentServices, stop: threading.Event) -> RunResult:
    """Play and learn until `total_steps` or until `stop` is set; checkpoint on the way out."""
    agent = Agent(settings, agent_id, services, stop)
    observation = agent.reset()
    while agent.state.step < settings.total_steps and not stop.is_set():
        epsilon = agent.epsilon()
        action = agent.act(observation, epsilon)
        next_observation, reward, terminated, truncated, info = agent.env.step(action)
        agent.store(observation, action, float(reward), next_observation, bool(terminated), bool(truncated))
        if terminated or truncated:
            agent.end_episode(info, epsilon)
            observation, _ = agent.env.reset()
        else:
            observation = next_observation
        agent.learn()
        agent.evaluate()
        agent.checkpoint()
        agent.report(epsilon)
    if stop.is_set():
        logger.info("stop requested at step {}: writing a final checkpoint", agent.state.step)
    return agent.finish()


class Agent:
    """What the loop works with: envs, learner, checkpointer, counters; one method per step."""

    def __init__(self, settings: Settings, agent_id: str, services: AgentServices, stop: threading.Event) -> None:
        self.settings = settings
        self.agent_id = agent_id
        self.services = services
        # Set when the agent must stop: long work (a training round, an evaluation) ends early
        # for it, so the final checkpoint fits in a container's grace period.
        self.stop = stop
        self.seed = settings.seed + (settings.agent_index or 0)
        seed_everything(self.seed)
        self.rng = np.random.default_rng(self.seed)
        if settings.exploration == "ape_x":
            wrap_warning = ape_x_wrap_warning(settings.agent_index or 0, settings.hive_size)
            if wrap_warning is not None:
                logger.warning(wrap_warning)
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        self.env = make_env(
            settings.env_id, self.seed, settings.repeat_action_probability, settings.frame_stack, settings.noop_max
        )
        self.videos = EvaluationVideos.from_settings(settings, agent_id, services.training_log)
        self.eval_env = self.videos.wrap(
            make_env(
                settings.env_id,
                self.seed + 10_000,
                settings.repeat_action_probability,
                settings.frame_stack,
                settings.noop_max,
                render_mode=self.videos.render_mode,
            )
        )
        assert self.env.observation_space.shape is not None  # make_env checked: a Box
        observation_shape = tuple(self.env.observation_space.shape)
        self.num_actions = int(self.env.action_space.n)  # type: ignore[attr-defined]
        observation_dtype = self.env.observation_space.dtype
        assert observation_dtype is not None  # a Box has one
        services.sampler.expect(ObservationSpec(observation_shape, np.dtype(observation_dtype)))
        device = select_device(settings.device)
        self.learner = DoubleDQNLearner(observation_shape, self.num_actions, settings, device)
        self.checkpointer = Checkpointer(
            settings, agent_id, compatibility_of(settings, observation_shape, self.num_actions)
        )
        self.state = (self.checkpointer.resume(self.learner) if settings.resume else None) or AgentState()
        self.result = RunResult(
            steps=self.state.step, episodes=self.state.episode, updates=self.state.updates, last_eval=None
        )
        self.recent_returns: deque[float] = deque(maxlen=100)
        self.n_step = NStepFolder(settings.n_step)
        self.train_rounds = 0
        self.last_report = 0.0
        self.step_rate = WindowedRate(RATE_WINDOW_SECONDS)
        self.episode_started = time.perf_counter()
        logger.info(
            "agent {} on {} ({} actions, observations {}), device {}, starting at step {}",
            agent_id,
            settings.env_id,
            self.num_actions,
            observation_shape,
            device,
            self.state.step,
        )

    def reset(self) -> npt.NDArray[Any]:
        """The first observation of the run (seeded so a resumed agent plays a new episode)."""
        observation, _ = self.env.reset(seed=self.seed + self.state.episode)
        self.episode_started = time.perf_counter()
        return np.asarray(observation)

    def epsilon(self) -> float:
        """The exploration rate at the current step, by CONFIG_exploration."""
        settings = self.settings
        if settings.exploration == "ape_x":
            return ape_x_epsilon(
                settings.agent_index or 0, settings.hive_size, settings.ape_x_epsilon, settings.ape_x_alpha
            )
        return linear_schedule(
            self.state.step, settings.epsilon_start, settings.epsilon_end, settings.epsilon_decay_steps
        )

    def learning_rate(self) -> float:
        """The learning rate at the current step: constant, or decaying by CONFIG_learning_rate_decay_steps."""
        settings = self.settings
        return learning_rate_at(
            self.state.step, settings.learning_rate, settings.learning_rate_end, settings.learning_rate_decay_steps
        )

    def act(self, observation: npt.NDArray[Any], epsilon: float) -> int:
        """Epsilon-greedy: a random action with probability epsilon, else the greedy one."""
        if self.rng.random() < epsilon:
            return int(self.rng.integers(self.num_actions))
        return self.learner.greedy_action(observation)

    def store(
        self,
        observation: npt.NDArray[Any],
        action: int,
        reward: float,
        next_observation: npt.NDArray[Any],
        terminated: bool,
        truncated: bool,
    ) -> None:
        """Queue the step's transition for the hive's memory (the writer thread encodes it), folded
        into n-step transitions when CONFIG_n_step > 1; count the step."""
        transition = Transition(
            state=observation,
            action=action,
            reward=reward,
            next_state=next_observation,
            terminated=terminated,
            truncated=truncated,
            agent_id=self.agent_id,
            episode=self.state.episode,
            step=self.state.step,
            timestamp_ns=time.time_ns(),
        )
        for folded in self.n_step.add(transition):
            self.services.writer.add_transition(folded)
        self.state.step += 1

    def end_episode(self, info: dict[str, Any], epsilon: float) -> None:
        """Log the finished episode with its real score."""
        episode_return = float(info["episode"]["r"])
        episode_length = int(info["episode"]["l"])
        elapsed = time.perf_counter() - self.episode_started
        self.recent_returns.append(episode_return)
        self.state.episode += 1
        record = EpisodeRecord(
            env_id=self.settings.env_id,
            episode=self.state.episode,
            episode_return=episode_return,
            episode_length=episode_length,
            epsilon=epsilon,
            agent_step=self.state.step,
            hive_step=self.services.sampler.hive_pushed,
            steps_per_second=episode_length / elapsed if elapsed > 0 else 0.0,
        )
        self.services.training_log.write(record)
        for callback in self.services.callbacks:
            callback.on_episode(record)
        logger.info(
            "episode {} return {:.1f} length {} epsilon {:.3f} step {}",
            self.state.episode,
            episode_return,
            episode_length,
            epsilon,
            self.state.step,
        )
        self.episode_started = time.perf_counter()

    def learn(self) -> None:
        """Every train_frequency steps past learning_starts: sync the sampler, then gradient steps;
        every target_update_interval steps: update the target network."""
        settings, step = self.settings, self.state.step
        if not settings.learning:
            return
        if step >= settings.learning_starts and step % settings.train_frequency == 0:
            sampler, priorities = self.services.sampler, self.services.priorities
            if self.train_rounds % settings.mirror_sync_interval == 0:
                sampler.sync()
            self.train_rounds += 1
            if priorities is not None:
                priorities.anneal(step)
            self.learner.set_learning_rate(self.learning_rate())
            for _ in range(settings.gradient_steps):
                if self.stop.is_set():  # CartPole's preset makes 128 gradient steps a round
                    break
                batch = sampler.sample(settings.batch_size, self.rng)
                if batch is None:  # too little in memory yet: play on, never pad a batch
                    break
                if priorities is not None and batch.indices is not None:
                    batch = batch._replace(weights=priorities.importance_weights(batch.indices, sampler.size()))
                stats = self.learner.update(batch)
                if priorities is not None and batch.indices is not None and stats.td_errors is not None:
                    priorities.update_priorities(batch.indices, stats.td_errors)
                self.state.updates += 1
                if self.state.updates % settings.train_log_interval == 0:
                    age = (time.time_ns() - batch.timestamps_ns.astype(np.float64)).mean() / 1e9
                    self._log_train(stats.loss, stats.mean_q, stats.grad_norm, float(age))
        if step % settings.target_update_interval == 0:
            self.learner.update_target()

    def _log_train(self, loss: float, mean_q: float, grad_norm: float, sample_age_seconds: float) -> None:
        writer, sampler = self.services.writer, self.services.sampler
        record = TrainRecord(
            update=self.state.updates,
            agent_step=self.state.step,
            loss=loss,
            mean_q=mean_q,
            grad_norm=grad_norm,
            learning_rate=self.learning_rate(),
            n_step=self.settings.n_step,
            epsilon=self.epsilon(),
            replay_sample_age_seconds=sample_age_seconds,
            replay_size=sampler.size(),
            dropped_transitions=writer.dropped,
            push_errors=writer.push_errors,
            corrupt_entries=sampler.corrupt_entries,
        )
        self.services.training_log.write(record)
        for callback in self.services.callbacks:
            callback.on_train(record)

    def evaluate(self) -> None:
        """Every eval_interval steps: play evaluation episodes, log them, keep the best model."""
        settings, state = self.settings, self.state
        if not settings.eval_interval or state.step % settings.eval_interval != 0:
            return
        # Evaluation pauses play, for minutes on Atari: say so, keep saying so (a status
        # expires after 30 s), and report afresh after it. No step is played meanwhile, so
        # the exploration rate is the same throughout.
        epsilon = self.epsilon()
        self._publish(self.status(epsilon, AgentPhase.EVALUATING))
        self.last_report = time.monotonic()
        scores = self.videos.record(
            state.step,
            state.best_eval,
            lambda: evaluate(
                self.learner,
                self.eval_env,
                settings.eval_episodes,
                settings.eval_epsilon,
                self.rng,
                self.seed + 10_000 + state.step,
                after_step=lambda: self.report(epsilon, AgentPhase.EVALUATING),
                stop=self.stop.is_set,
            ),
        )
        self.last_report = 0.0  # the next report says what the evaluation found (or that it ended)
        if self.stop.is_set():  # cut short: its few episodes say nothing comparable
            logger.info(
                "evaluation at step {} abandoned after {} of {} episodes: stop requested",
                state.step,
                len(scores),
                settings.eval_episodes,
            )
            return
        mean_score = float(np.mean(scores))
        self.result.last_eval = mean_score
        record = EvalRecord(
            env_id=settings.env_id,
            agent_step=state.step,
            eval_return_mean=mean_score,
            eval_return_std=float(np.std(scores)),
            eval_episodes=len(scores),
            eval_epsilon=settings.eval_epsilon,
            repeat_action_probability=settings.repeat_action_probability,
            epsilon=epsilon,
        )
        self.services.training_log.write(record)
        for callback in self.services.callbacks:
            callback.on_eval(record)
        logger.info(
            "evaluation at step {}: mean {:.1f} over {} episodes (epsilon {})",
            state.step,
            mean_score,
            len(scores),
            settings.eval_epsilon,
        )
        if mean_score > state.best_eval:
            state.best_eval = mean_score
            self.checkpointer.save_best(self.learner, state, mean_score)

    def checkpoint(self, force: bool = False) -> None:
        """Every checkpoint_interval steps (or when `force`d): write a checkpoint."""
        if not force and self.state.step % self.settings.checkpoint_interval != 0:
            return
        path = self.checkpointer.save(self.learner, self.state, self.epsilon())
        self.result.checkpoint = path
        for callback in self.services.callbacks:
            callback.on_checkpoint(path)

    def report(self, epsilon: float, phase: AgentPhase | None = None) -> None:
        """Every status_interval seconds: tell the callbacks (the status board among them) how it goes."""
        now = time.monotonic()
        if not self.services.callbacks or now - self.last_report <= self.settings.status_interval:
            return
        self.last_report = now
        self._publish(self.status(epsilon, phase or self.phase()))

    def _publish(self, status: AgentStatus) -> None:
        for callback in self.services.callbacks:
            callback.on_report(status)

    def phase(self) -> AgentPhase:
        """What the loop does at the current step, between evaluations."""
        if not self.settings.learning:
            return AgentPhase.PLAYING
        return AgentPhase.FILLING if self.state.step < self.settings.learning_starts else AgentPhase.LEARNING

    def status(self, epsilon: float, phase: AgentPhase) -> AgentStatus:
        """The agent's progress now; marks the step counter for the windowed rate."""
        writer, sampler, returns, state = self.services.writer, self.services.sampler, self.recent_returns, self.state
        self.step_rate.mark(time.monotonic(), state.step)
        return AgentStatus(
            agent_id=self.agent_id,
            phase=phase,
            step=state.step,
            learning_starts=self.settings.learning_starts,
            total_steps=self.settings.total_steps,
            episodes=state.episode,
            last_return=returns[-1] if returns else None,
            mean_return=float(np.mean(returns)) if returns else None,
            steps_per_second=self.step_rate.per_second(),
            epsilon=epsilon,
            replay_size=sampler.size(),
            hive_pushed=sampler.hive_pushed,
            last_eval=self.result.last_eval,
            best_eval=state.best_eval if math.isfinite(state.best_eval) else None,
            dropped=writer.dropped,
            push_errors=writer.push_errors,
            corrupt_entries=sampler.corrupt_entries,
            updated=time.time(),
        )

    def finish(self) -> RunResult:
        """Share the steps still held for n-step transitions; always leave a checkpoint of where
        we are; close the envs; the run's result."""
        for folded in self.n_step.flush():
            self.services.writer.add_transition(folded)
        self.checkpoint(force=True)
        logger.info("checkpoint written to {} at step {}", self.result.checkpoint, self.state.step)
        self.env.close()
        self.eval_env.close()
        self.result.steps, self.result.episodes, self.result.updates = (
            self.state.step,
            self.state.episode,
            self.state.updates,
        )
        return self.result
