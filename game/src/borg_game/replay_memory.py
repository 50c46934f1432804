"""One builder for the replay memory: the writer, the sampler and their one codec, from settings.

Used by the agent's entry point and the benchmarks alike. Pushes go to `push_client`; pulls
go to `pull_client` when given (e.g. a Redis read replica), else to the same client.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from borg_game.codec import TransitionCodec
from borg_game.direct_sampler import DirectSampler
from borg_game.mirror import MirrorSampler
from borg_game.mirror_store import IndexSampler
from borg_game.prioritized import PrioritizedIndexSampler
from borg_game.replay import ReplaySampler
from borg_game.replay_writer import ReplayWriter
from borg_game.settings import Settings


@dataclass
class ReplayMemory:
    """Both sides of the hive's replay memory, sharing one codec."""

    codec: TransitionCodec
    writer: ReplayWriter
    sampler: ReplaySampler
    # The mirror's priorities when CONFIG_prioritized_replay is on: the learner's TD errors go here.
    priorities: PrioritizedIndexSampler | None = None


def build_replay_memory(
    settings: Settings,
    push_client: redis.Redis,
    pull_client: redis.Redis | None = None,
    index_sampler: IndexSampler | None = None,
) -> ReplayMemory:
    """The writer and the sampler chosen by CONFIG_replay_sampling, over one codec.

    `index_sampler` picks the mirror's rows (when None: by priority if CONFIG_prioritized_replay,
    else uniform); the direct sampler has none.
    """
    codec = TransitionCodec(settings.compression_level, settings.max_transition_bytes)
    writer = ReplayWriter(
        push_client,
        settings.env_replay_key,
        settings.env_push_counter_key,
        settings.replay_capacity,
        batch_size=settings.push_batch_size,
        queue_size=settings.push_queue_size,
        # Its own codec: the writer thread compresses while the sampler decompresses, and a
        # zstd context must not be used by two threads at once.
        codec=TransitionCodec(settings.compression_level, settings.max_transition_bytes),
    )
    client = pull_client or push_client
    priorities = None
    if index_sampler is None and settings.prioritized_replay:
        index_sampler = priorities = PrioritizedIndexSampler(
            settings.replay_capacity,
            alpha=settings.priority_alpha,
            beta_start=settings.priority_beta_start,
            beta_steps=settings.priority_beta_steps,
            epsilon=settings.priority_epsilon,
        )
    sampler: ReplaySampler
    if settings.replay_sampling == "direct":
        sampler = DirectSampler(client, settings.env_replay_key, settings.env_push_counter_key, codec)
    else:
        sampler = MirrorSampler(
            client,
            settings.env_replay_key,
            settings.env_push_counter_key,
            settings.replay_capacity,
            codec,
            index_sampler=index_sampler,
        )
    return ReplayMemory(codec=codec, writer=writer, sampler=sampler, priorities=priorities)
