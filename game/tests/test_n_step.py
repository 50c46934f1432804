"""n-step transitions: the agent's folding, the learner's returns and targets, the mirror's columns."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import redis
import torch

from borg_game.codec import CorruptTransitionError, StoredColumns, Transition, TransitionCodec
from borg_game.ddqn import n_step_returns
from borg_game.learner import DoubleDQNLearner
from borg_game.mirror_store import MirrorStore
from borg_game.n_step import NStepFolder
from borg_game.redis_server import EmbeddedRedis
from borg_game.replay import ReplayBatch
from borg_game.settings import load_settings
from tests.test_agent_status import cartpole_settings, run_cartpole_agent


def step(index: int, reward: float, terminated: bool = False, truncated: bool = False) -> Transition:
    """Step `index` of an episode of CartPole-shaped observations: state `index`, next state `index + 1`."""
    return Transition(
        state=np.full(4, index, dtype=np.float32),
        action=index % 2,
        reward=reward,
        next_state=np.full(4, index + 1, dtype=np.float32),
        terminated=terminated,
        truncated=truncated,
        agent_id="agent-0",
        step=index,
    )


def stored_columns(codec: TransitionCodec, transitions: list[Transition]) -> StoredColumns:
    """The columns a mirror's pull makes of `transitions`, every one of them decodable."""

    def refuse(error: CorruptTransitionError) -> None:
        raise error

    columns = codec.stored_columns([codec.encode(t) for t in transitions], None, refuse)
    assert columns is not None
    return columns


def fold(folder: NStepFolder, steps: list[Transition]) -> list[list[Transition]]:
    return [folder.add(one) for one in steps]


def test_each_transition_spans_n_steps_and_shorter_ones_end_the_episode() -> None:
    rewards = [1.0, 2.0, 3.0, 4.0, 5.0]
    steps = [step(index, reward, terminated=index == 4) for index, reward in enumerate(rewards)]
    handed_out = fold(NStepFolder(3), steps)

    # Nothing until the first step spans 3; then one per step; the terminal step hands out the rest.
    assert [len(out) for out in handed_out] == [0, 0, 1, 1, 3]
    transitions = [transition for out in handed_out for transition in out]
    assert [t.step for t in transitions] == [0, 1, 2, 3, 4]
    assert [t.later_rewards for t in transitions] == [(2.0, 3.0), (3.0, 4.0), (4.0, 5.0), (5.0,), ()]
    assert [t.span for t in transitions] == [3, 3, 3, 2, 1]
    assert [t.reward for t in transitions] == rewards  # each keeps its own first reward
    # next_state is the observation after the last step spanned; only the spans that reach the
    # terminal step are terminal.
    assert [float(t.next_state[0]) for t in transitions] == [3.0, 4.0, 5.0, 5.0, 5.0]
    assert [t.terminated for t in transitions] == [False, False, True, True, True]
    for transition, first in zip(transitions, steps, strict=True):
        assert np.array_equal(transition.state, first.state) and transition.action == first.action


def test_a_truncated_episode_ends_its_spans_truncated_and_the_next_episode_starts_afresh() -> None:
    folder = NStepFolder(3)
    first_episode = [step(0, 1.0), step(1, 1.0, truncated=True)]
    ended = [transition for out in fold(folder, first_episode) for transition in out]
    assert [(t.span, t.truncated, t.terminated) for t in ended] == [(2, True, False), (1, True, False)]
    # Nothing of the first episode is left to fold into the second.
    second = fold(folder, [step(10, 0.5), step(11, 0.5), step(12, 0.5)])
    assert [[t.step for t in out] for out in second] == [[], [], [10]]


def test_stopping_mid_episode_hands_out_the_held_steps_bootstrapped_from_the_last_observation() -> None:
    folder = NStepFolder(4)
    assert fold(folder, [step(0, 1.0), step(1, 2.0)]) == [[], []]
    flushed = folder.flush()
    assert [(t.step, t.later_rewards, float(t.next_state[0])) for t in flushed] == [(0, (2.0,), 2.0), (1, (), 2.0)]
    assert not any(t.terminated or t.truncated for t in flushed)
    assert folder.flush() == []


def test_one_step_hands_every_step_out_as_it_is() -> None:
    one = step(0, 1.0)
    assert NStepFolder(1).add(one) == [one]
    with pytest.raises(ValueError, match="at least one step"):
        NStepFolder(0)


def test_later_rewards_survive_the_codec() -> None:
    codec = TransitionCodec()
    (folded,) = [t for out in fold(NStepFolder(3), [step(0, 1.0), step(1, -0.25), step(2, 7.5)]) for t in out]
    decoded = codec.decode(codec.encode(folded))
    assert decoded.later_rewards == (-0.25, 7.5) and decoded.span == 3
    assert codec.decode(codec.encode(step(0, 1.0))).later_rewards == ()
    # Version 2 marks n-step entries, which a reader from before them would skip, not misread.
    assert codec.parse(codec.encode(folded)).schema_version == 2
    assert codec.parse(codec.encode(step(0, 1.0))).schema_version == 1


def test_an_entry_whose_span_and_later_rewards_disagree_is_corrupt() -> None:
    codec = TransitionCodec()
    message = codec.parse(codec.encode(replace(step(0, 1.0), later_rewards=(2.0, 3.0))))
    assert message.span == 3
    message.span = 2
    with pytest.raises(CorruptTransitionError, match="span 2 with 2 later rewards"):
        codec.decode(message.SerializeToString())
    skipped: list[CorruptTransitionError] = []
    columns = codec.stored_columns([message.SerializeToString()], None, skipped.append)
    assert columns is not None and len(columns) == 0 and len(skipped) == 1


def test_n_step_returns_on_a_hand_computed_batch() -> None:
    rewards = torch.tensor([1.0, 0.0, 2.0])
    # Row 0 spans 3 steps, row 1 one (padding only), row 2 two.
    later_rewards = torch.tensor([[1.0, 1.0], [0.0, 0.0], [-4.0, 0.0]])
    spans = torch.tensor([3, 1, 2])
    returns, discounts = n_step_returns(rewards, later_rewards, spans, gamma=0.5)
    assert returns.tolist() == pytest.approx([1.0 + 0.5 + 0.25, 0.0, 2.0 - 2.0])
    assert discounts.tolist() == pytest.approx([0.125, 0.5, 0.25])


@pytest.mark.parametrize("clip_rewards", [False, True])
def test_the_learner_bootstraps_each_row_after_its_own_span(clip_rewards: bool) -> None:
    settings = load_settings(
        {
            "CONFIG_env_id": "CartPole-v1",
            "CONFIG_mlp_hidden_sizes": "16",
            "CONFIG_device": "cpu",
            "CONFIG_gamma": "0.9",
            "CONFIG_clip_rewards": str(clip_rewards).lower(),
        },
        env_file=None,
    )
    torch.manual_seed(0)
    learner = DoubleDQNLearner((4,), 2, settings, torch.device("cpu"))
    rng = np.random.default_rng(0)
    batch = ReplayBatch(
        observations=rng.normal(size=(3, 4)).astype(np.float32),
        actions=np.array([0, 1, 1]),
        rewards=np.array([1.0, 3.0, -2.0], dtype=np.float32),
        next_observations=rng.normal(size=(3, 4)).astype(np.float32),
        terminated=np.array([0.0, 0.0, 1.0], dtype=np.float32),
        timestamps_ns=np.zeros(3, dtype=np.int64),
        later_rewards=np.array([[2.0, 0.5], [0.0, 0.0], [1.0, 0.0]], dtype=np.float32),
        spans=np.array([3, 1, 2]),
    )
    with torch.no_grad():
        observations, next_observations = torch.as_tensor(batch.observations), torch.as_tensor(batch.next_observations)
        chosen = learner.q_network(observations)[torch.arange(3), torch.as_tensor(batch.actions)]
        greedy_next = learner.q_network(next_observations).argmax(dim=1)
        next_values = learner.target_network(next_observations)[torch.arange(3), greedy_next]
    clip = np.sign if clip_rewards else (lambda rewards: rewards)
    # Row by row, as written in the papers: sum_k gamma^k r_k + gamma^n (1 - terminal) Q_target(s_n, a*).
    returns = [
        clip(1.0) + 0.9 * clip(2.0) + 0.81 * clip(0.5),
        clip(3.0),
        clip(-2.0) + 0.9 * clip(1.0),
    ]
    targets = torch.tensor(returns, dtype=torch.float32) + torch.tensor([0.9**3, 0.9, 0.0]) * next_values
    expected_loss = torch.nn.functional.smooth_l1_loss(chosen, targets)
    assert learner.update(batch).loss == pytest.approx(expected_loss.item(), rel=1e-5)


def test_the_mirror_store_keeps_later_rewards_per_slot_and_clears_them_when_a_slot_is_rewritten() -> None:
    codec = TransitionCodec()
    n_step = [
        replace(step(0, 1.0), later_rewards=(2.0, 3.0)),
        replace(step(1, 1.0), later_rewards=(4.0,)),
        step(2, 1.0),
    ]
    columns = stored_columns(codec, n_step)
    store = MirrorStore(4, columns.spec)
    store.extend(columns, codec)
    batch = store.gather(np.array([0, 1, 2]), codec)
    assert batch.later_rewards is not None and batch.spans is not None
    assert batch.later_rewards.tolist() == [[2.0, 3.0], [4.0, 0.0], [0.0, 0.0]]
    assert batch.spans.tolist() == [3, 2, 1]

    # Three one-step rows wrap the ring over slots 3, 0 and 1: their later rewards are gone.
    store.extend(stored_columns(codec, [step(index, 0.0) for index in range(3)]), codec)
    batch = store.gather(np.array([0, 1, 2, 3]), codec)
    assert batch.later_rewards is not None and batch.spans is not None
    assert batch.later_rewards.tolist() == [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
    assert batch.spans.tolist() == [1, 1, 1, 1]


def test_a_store_that_never_held_an_n_step_row_hands_out_one_step_batches() -> None:
    codec = TransitionCodec()
    columns = stored_columns(codec, [step(index, 1.0) for index in range(3)])
    store = MirrorStore(8, columns.spec)
    store.extend(columns, codec)
    batch = store.gather(np.array([0, 2]), codec)
    assert batch.later_rewards is None and batch.spans is None


def test_a_cartpole_agent_pushes_every_step_once_as_n_step_transitions(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """A real run (playing only) with n = 3: each step is pushed once, spanning 3 steps except
    the last two of each episode (2 and 1), the episode's end included; the run's unfinished
    last episode is handed out when the agent stops."""
    settings = cartpole_settings(
        redis_server.url, tmp_path, total_steps="300", learning="false", n_step="3", replay_key="n-step-transitions"
    )
    client = redis.Redis.from_url(redis_server.url)
    run_cartpole_agent(settings, client, [], threading.Event())
    codec = TransitionCodec()
    entries = client.lrange(settings.env_replay_key, 0, -1)
    pushed = [codec.decode(entry) for entry in entries if isinstance(entry, bytes)]
    assert sorted(t.step for t in pushed) == list(range(300))
    by_step = {t.step: t for t in pushed}
    episodes: dict[int, list[Transition]] = {}
    for transition in sorted(pushed, key=lambda t: t.step):
        episodes.setdefault(transition.episode, []).append(transition)
    assert len(episodes) > 5  # CartPole episodes of a random policy last tens of steps
    for transitions in episodes.values():
        spans = [t.span for t in transitions]
        assert spans == [3] * (len(spans) - 2) + [2, 1], spans
        assert all(t.later_rewards == (1.0,) * (t.span - 1) for t in transitions)  # CartPole: 1 per step
        # Only the spans that reach the episode's last step end as it ended.
        assert not any(t.terminated or t.truncated for t in transitions[:-3])
        assert len({(t.terminated, t.truncated) for t in transitions[-3:]}) == 1
        for transition in transitions:
            if transition.step + transition.span in by_step:  # next_state: the state n steps on
                following = by_step[transition.step + transition.span]
                if following.episode == transition.episode:
                    assert np.array_equal(transition.next_state, following.state)
    # Every episode but the last (cut by the run's end) ended terminated or truncated.
    ended = [transitions[-1] for episode, transitions in sorted(episodes.items())[:-1]]
    assert all(t.terminated or t.truncated for t in ended)
