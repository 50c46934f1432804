"""One Double-DQN agent of the hive: it plays, shares every transition, learns from the hive.

Read top to bottom: the learner (`DoubleDQNLearner`), then the loop that plays, pushes to
the shared memory, trains, evaluates and checkpoints (`run_agent`).
"""

from __future__ import annotations

import math
import random
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
import torch
from loguru import logger
from torch import nn

from borg_game.checkpoint import (
    CHECKPOINT_FORMAT,
    atomic_torch_save,
    checkpoint_path,
    load_newest,
    prune_checkpoints,
)
from borg_game.codec import Transition, TransitionCodec
from borg_game.ddqn import double_dqn_targets, linear_epsilon, td_loss, weighted_td_loss
from borg_game.envs import make_env
from borg_game.networks import build_q_network
from borg_game.prioritized import PrioritizedSampler
from borg_game.replay import ReplayBatch, ReplaySampler, ReplayWriter
from borg_game.settings import Settings
from borg_game.telemetry import StatusBoard, TrainingLog


def select_device(preference: str) -> torch.device:
    """CUDA when asked for or when `auto` finds it, else CPU."""
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (the envs are seeded at reset)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class TrainStats:
    """What one gradient update measured."""

    loss: float
    mean_q: float
    grad_norm: float
    sample_age_seconds: float
    td_errors: npt.NDArray[np.float32] | None = None  # |TD error| per transition, for prioritized batches


class DoubleDQNLearner:
    """The online network, its target copy and the optimizer; `update` is one TD step."""

    def __init__(
        self, observation_shape: tuple[int, ...], num_actions: int, settings: Settings, device: torch.device
    ) -> None:
        self.settings = settings
        self.device = device
        self.q_network = build_q_network(observation_shape, num_actions, settings.mlp_hidden_sizes).to(device)
        self.target_network = build_q_network(observation_shape, num_actions, settings.mlp_hidden_sizes).to(device)
        self.target_network.load_state_dict(self.q_network.state_dict())
        self.target_network.requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.q_network.parameters(), lr=settings.learning_rate, eps=settings.adam_eps)

    @torch.inference_mode()  # cheaper than no_grad: no version counters, no autograd bookkeeping
    def greedy_action(self, observation: npt.NDArray[Any]) -> int:
        """argmax_a Q(s, a) of the online network."""
        tensor = torch.as_tensor(observation, device=self.device).unsqueeze(0)
        return int(self.q_network(tensor).argmax(dim=1).item())

    def update(self, batch: ReplayBatch) -> TrainStats:
        """One gradient step of Double DQN on a minibatch of hive transitions."""
        device = self.device
        observations = torch.as_tensor(batch.observations, device=device)
        next_observations = torch.as_tensor(batch.next_observations, device=device)
        actions = torch.as_tensor(batch.actions, device=device)
        rewards = torch.as_tensor(batch.rewards, device=device)
        if self.settings.clip_rewards:
            rewards = rewards.sign()  # learning sees sign(r); logged returns stay the real score
        terminated = torch.as_tensor(batch.terminated, device=device)
        with torch.no_grad():
            # Online net chooses a' on s', target net evaluates it: the Double DQN target.
            targets = double_dqn_targets(
                rewards,
                terminated,
                next_q_online=self.q_network(next_observations),
                next_q_target=self.target_network(next_observations),
                gamma=self.settings.gamma,
            )
        q_values = self.q_network(observations)
        td_errors = None
        if batch.weights is None:
            loss = td_loss(q_values, actions, targets)
        else:
            weights = torch.as_tensor(batch.weights, device=device)
            loss, td_errors = weighted_td_loss(q_values, actions, targets, weights)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        grad_norm = nn.utils.clip_grad_norm_(self.q_network.parameters(), self.settings.max_grad_norm)
        self.optimizer.step()
        age = (time.time_ns() - batch.timestamps_ns.astype(np.float64)).mean() / 1e9
        return TrainStats(
            loss=float(loss.item()),
            mean_q=float(q_values.detach().mean().item()),
            grad_norm=float(grad_norm.item()),
            sample_age_seconds=float(age),
            td_errors=None if td_errors is None else td_errors.cpu().numpy(),
        )

    def update_target(self) -> None:
        """Copy (tau = 1) or Polyak-average (tau < 1) the online weights into the target."""
        tau = self.settings.tau
        with torch.no_grad():
            for target, online in zip(self.target_network.parameters(), self.q_network.parameters(), strict=True):
                if tau >= 1.0:
                    target.copy_(online)
                else:
                    target.lerp_(online, tau)


@dataclass
class AgentState:
    """Counters that a checkpoint carries across restarts."""

    step: int = 0
    episode: int = 0
    updates: int = 0
    best_eval: float = -math.inf


@dataclass
class RunResult:
    """What a finished (or stopped) run reports."""

    steps: int
    episodes: int
    updates: int
    last_eval: float | None
    evals: list[tuple[int, float]] = field(default_factory=list)
    checkpoint: Path | None = None


def evaluate(
    learner: DoubleDQNLearner,
    env: gym.Env[Any, Any],
    episodes: int,
    epsilon: float,
    rng: np.random.Generator,
    seed: int,
) -> list[float]:
    """Play `episodes` episodes at `epsilon` and return their real scores."""
    scores: list[float] = []
    observation, _ = env.reset(seed=seed)
    while len(scores) < episodes:
        if rng.random() < epsilon:
            action = int(rng.integers(env.action_space.n))  # type: ignore[attr-defined]
        else:
            action = learner.greedy_action(observation)
        observation, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            scores.append(float(info["episode"]["r"]))
            observation, _ = env.reset()
    return scores


def compatibility_of(settings: Settings, observation_shape: tuple[int, ...], num_actions: int) -> dict[str, Any]:
    """What a checkpoint must match to be loaded into this agent."""
    return {
        "env_id": settings.env_id,
        "observation_shape": list(observation_shape),
        "num_actions": num_actions,
        "mlp_hidden_sizes": list(settings.mlp_hidden_sizes),
    }


class Checkpointer:
    """Writes this agent's checkpoints and best model into the shared model store."""

    def __init__(self, settings: Settings, agent_id: str, compatibility: dict[str, Any]) -> None:
        self.store = settings.model_store
        self.agent_id = agent_id
        self.keep = settings.checkpoint_keep
        self.compatibility = compatibility
        self.settings_dump = settings.public_dump()

    def save(self, learner: DoubleDQNLearner, state: AgentState, epsilon: float) -> Path:
        """Write a full checkpoint atomically and prune old ones."""
        path = checkpoint_path(self.store, self.agent_id, state.step)
        atomic_torch_save(
            {
                "format": CHECKPOINT_FORMAT,
                "model": learner.q_network.state_dict(),
                "target": learner.target_network.state_dict(),
                "optimizer": learner.optimizer.state_dict(),
                "step": state.step,
                "episode": state.episode,
                "updates": state.updates,
                "best_eval": state.best_eval,
                "epsilon": epsilon,
                "settings": self.settings_dump,
                "compatibility": self.compatibility,
            },
            path,
        )
        prune_checkpoints(self.store, self.agent_id, self.keep)
        return path

    def save_best(self, learner: DoubleDQNLearner, state: AgentState, score: float) -> None:
        """Keep the weights that scored best in evaluation."""
        atomic_torch_save(
            {
                "format": CHECKPOINT_FORMAT,
                "model": learner.q_network.state_dict(),
                "step": state.step,
                "eval_score": score,
                "settings": self.settings_dump,
                "compatibility": self.compatibility,
            },
            self.store / f"best-{self.agent_id}.pt",
        )

    def resume(self, learner: DoubleDQNLearner) -> AgentState | None:
        """Load the newest compatible checkpoint of the hive into `learner`."""
        payload = load_newest(self.store, self.compatibility)
        if payload is None:
            return None
        learner.q_network.load_state_dict(payload["model"])
        learner.target_network.load_state_dict(payload["target"])
        learner.optimizer.load_state_dict(payload["optimizer"])
        logger.info("resumed from {} at step {} (epsilon {:.3f})", payload["path"], payload["step"], payload["epsilon"])
        return AgentState(
            step=int(payload["step"]),
            episode=int(payload["episode"]),
            updates=int(payload["updates"]),
            best_eval=float(payload["best_eval"]),
        )


@dataclass
class AgentServices:
    """The I/O the agent loop talks to, built in `main()` from settings."""

    writer: ReplayWriter
    sampler: ReplaySampler
    training_log: TrainingLog
    status_board: StatusBoard | None = None


def run_agent(settings: Settings, agent_id: str, services: AgentServices, stop: threading.Event) -> RunResult:
    """Play and learn until `total_steps` or until `stop` is set; checkpoint on the way out."""
    agent_index = settings.agent_index or 0
    seed = settings.seed + agent_index
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    device = select_device(settings.device)

    env = make_env(settings.env_id, seed, settings.repeat_action_probability, settings.frame_stack, settings.noop_max)
    eval_env = make_env(
        settings.env_id, seed + 10_000, settings.repeat_action_probability, settings.frame_stack, settings.noop_max
    )
    observation_space = env.observation_space
    assert observation_space.shape is not None
    observation_shape = tuple(observation_space.shape)
    num_actions = int(env.action_space.n)  # type: ignore[attr-defined]

    learner = DoubleDQNLearner(observation_shape, num_actions, settings, device)
    checkpointer = Checkpointer(settings, agent_id, compatibility_of(settings, observation_shape, num_actions))
    state = (checkpointer.resume(learner) if settings.resume else None) or AgentState()
    codec = TransitionCodec(settings.compression_level, settings.max_transition_bytes)
    log = services.training_log
    logger.info(
        "agent {} on {} ({} actions, observations {}), device {}, starting at step {}",
        agent_id,
        settings.env_id,
        num_actions,
        observation_shape,
        device,
        state.step,
    )

    def epsilon_at(step: int) -> float:
        return linear_epsilon(step, settings.epsilon_start, settings.epsilon_end, settings.epsilon_decay_steps)

    result = RunResult(steps=state.step, episodes=state.episode, updates=state.updates, last_eval=None)
    recent_returns: deque[float] = deque(maxlen=100)
    observation, _ = env.reset(seed=seed + state.episode)
    episode_started = time.perf_counter()
    train_rounds = 0
    last_status = 0.0
    steps_at_start = state.step
    run_started = time.perf_counter()

    while state.step < settings.total_steps and not stop.is_set():
        epsilon = epsilon_at(state.step)
        if rng.random() < epsilon:
            action = int(rng.integers(num_actions))
        else:
            action = learner.greedy_action(observation)
        next_observation, reward, terminated, truncated, info = env.step(action)
        services.writer.add(
            codec.encode(
                Transition(
                    state=observation,
                    action=action,
                    reward=float(reward),
                    next_state=next_observation,
                    terminated=bool(terminated),
                    truncated=bool(truncated),
                    agent_id=agent_id,
                    episode=state.episode,
                    step=state.step,
                    timestamp_ns=time.time_ns(),
                )
            )
        )
        state.step += 1

        if terminated or truncated:
            episode_return = float(info["episode"]["r"])
            episode_length = int(info["episode"]["l"])
            elapsed = time.perf_counter() - episode_started
            recent_returns.append(episode_return)
            state.episode += 1
            log.record(
                "episode",
                env_id=settings.env_id,
                episode=state.episode,
                episode_return=episode_return,
                episode_length=episode_length,
                epsilon=epsilon,
                agent_step=state.step,
                hive_step=services.sampler.hive_pushed,
                steps_per_second=episode_length / elapsed if elapsed > 0 else 0.0,
            )
            logger.info(
                "episode {} return {:.1f} length {} epsilon {:.3f} step {}",
                state.episode,
                episode_return,
                episode_length,
                epsilon,
                state.step,
            )
            observation, _ = env.reset()
            episode_started = time.perf_counter()
        else:
            observation = next_observation

        if settings.learning and state.step >= settings.learning_starts and state.step % settings.train_frequency == 0:
            if train_rounds % settings.mirror_sync_interval == 0:
                services.sampler.sync()
            train_rounds += 1
            prioritized = services.sampler if isinstance(services.sampler, PrioritizedSampler) else None
            if prioritized is not None:
                prioritized.anneal(state.step)
            for _ in range(settings.gradient_steps):
                batch = services.sampler.sample(settings.batch_size, rng)
                if batch is None:  # too little in memory yet: play on, never pad a batch
                    break
                stats = learner.update(batch)
                if prioritized is not None and batch.slots is not None and stats.td_errors is not None:
                    prioritized.update_priorities(batch.slots, stats.td_errors)
                state.updates += 1
                if state.updates % settings.train_log_interval == 0:
                    log.record(
                        "train",
                        update=state.updates,
                        agent_step=state.step,
                        loss=stats.loss,
                        mean_q=stats.mean_q,
                        grad_norm=stats.grad_norm,
                        learning_rate=settings.learning_rate,
                        replay_sample_age_seconds=stats.sample_age_seconds,
                        replay_size=services.sampler.size(),
                    )

        if settings.learning and state.step % settings.target_update_interval == 0:
            learner.update_target()

        if settings.eval_interval and state.step % settings.eval_interval == 0:
            scores = evaluate(
                learner, eval_env, settings.eval_episodes, settings.eval_epsilon, rng, seed + 10_000 + state.step
            )
            mean_score = float(np.mean(scores))
            result.last_eval = mean_score
            result.evals.append((state.step, mean_score))
            log.record(
                "eval",
                env_id=settings.env_id,
                agent_step=state.step,
                eval_return_mean=mean_score,
                eval_return_std=float(np.std(scores)),
                eval_episodes=len(scores),
                eval_epsilon=settings.eval_epsilon,
                repeat_action_probability=settings.repeat_action_probability,
            )
            logger.info(
                "evaluation at step {}: mean {:.1f} over {} episodes (epsilon {})",
                state.step,
                mean_score,
                len(scores),
                settings.eval_epsilon,
            )
            if mean_score > state.best_eval:
                state.best_eval = mean_score
                checkpointer.save_best(learner, state, mean_score)

        if state.step % settings.checkpoint_interval == 0:
            result.checkpoint = checkpointer.save(learner, state, epsilon_at(state.step))

        now = time.monotonic()
        if services.status_board is not None and now - last_status > settings.status_interval:
            last_status = now
            services.status_board.publish(
                {
                    "agent_id": agent_id,
                    "step": state.step,
                    "episodes": state.episode,
                    "last_return": recent_returns[-1] if recent_returns else None,
                    "mean_return": float(np.mean(recent_returns)) if recent_returns else None,
                    "steps_per_second": (state.step - steps_at_start) / max(1e-9, time.perf_counter() - run_started),
                    "epsilon": epsilon,
                    "replay_size": services.sampler.size(),
                    "hive_pushed": services.sampler.hive_pushed,
                    "last_eval": result.last_eval,
                    "dropped": services.writer.dropped,
                    "updated": time.time(),
                }
            )

    if stop.is_set():
        logger.info("stop requested at step {}: writing a final checkpoint", state.step)
    # Stopped by a signal or done: always leave a checkpoint of where we are.
    result.checkpoint = checkpointer.save(learner, state, epsilon_at(state.step))
    logger.info("checkpoint written to {} at step {}", result.checkpoint, state.step)
    env.close()
    eval_env.close()
    result.steps, result.episodes, result.updates = state.step, state.episode, state.updates
    return result


def tensorboard_run_dir(settings: Settings, agent_id: str) -> Path | None:
    """runs/{env}__{run_id}__{agent}__{seed}__{time}, CleanRL's naming."""
    if settings.tensorboard_dir is None:
        return None
    env_name = settings.env_id.replace("/", "-")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return settings.tensorboard_dir / f"{env_name}__{settings.run_id}__{agent_id}__{settings.seed}__{stamp}"


def default_hostname() -> str:
    """This machine's (or container's) name, part of default agent ids."""
    return socket.gethostname()
