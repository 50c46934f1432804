"""Benchmark: what the Kafka training log costs an agent, measured side by side in one run.

    python game/benchmarks/kafka_telemetry.py [--records 20000]

Starts a real broker (borg_harness), then prints:
- the bare environment step time of CartPole-v1 and of the preprocessed ALE/Pong-v5 stack;
- the cost of one training-log record (TrainingLog.write: timestamp, dict, JSON, produce)
  into a KafkaJsonProducer, with the broker up and with it stopped;
- records per environment step (one per episode, one per train_frequency *
  train_log_interval steps) and so the telemetry overhead as a share of the step time;
- the messages/s the sink sustains end to end (emit as fast as possible until delivered).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
from borg_common.kafka_producer import KafkaJsonProducer
from borg_harness.kafka_broker import KafkaBroker
from loguru import logger

from borg_game.envs import make_env
from borg_game.settings import load_settings
from borg_game.telemetry import EpisodeRecord, TrainingLog, TrainRecord


def env_profile(env_id: str, steps: int) -> tuple[float, float]:
    """Seconds per bare env step with random actions, and the mean episode length."""
    env = make_env(env_id, seed=0, repeat_action_probability=0.25, frame_stack=4, noop_max=30)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    lengths, length = [], 0
    started = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))  # type: ignore[attr-defined]
        length += 1
        if terminated or truncated:
            lengths.append(length)
            length = 0
            env.reset()
    elapsed = time.perf_counter() - started
    env.close()
    return elapsed / steps, statistics.mean(lengths) if lengths else float(steps)


def record_cost(log: TrainingLog, records: int) -> float:
    """Seconds per TrainingLog.write of a realistic episode record, made in the loop as the
    agent makes it (median of 5 rounds)."""
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for index in range(records // 5):
            log.write(
                EpisodeRecord(
                    env_id="ALE/Pong-v5",
                    episode=index,
                    episode_return=-21.0,
                    episode_length=812,
                    epsilon=0.5,
                    agent_step=100_000,
                    hive_step=400_000,
                    steps_per_second=850.0,
                )
            )
        rounds.append((time.perf_counter() - started) / (records // 5))
    return statistics.median(rounds)


def main() -> int:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000, help="records per measurement")
    parser.add_argument("--pong-steps", type=int, default=4_000, help="Pong steps to time (0: skip Pong)")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    defaults = load_settings({}, env_file=None)
    train_records_per_step = 1 / (defaults.train_frequency * defaults.train_log_interval)

    envs = {"CartPole-v1": env_profile("CartPole-v1", 20_000)}
    if args.pong_steps:
        envs["ALE/Pong-v5"] = env_profile("ALE/Pong-v5", args.pong_steps)

    with KafkaBroker() as broker:
        baseline = record_cost(TrainingLog("bench", "agent-0", []), args.records)
        sink = KafkaJsonProducer(
            broker.bootstrap_servers,
            "bench_training_log",
            key="agent-0",
            kind="training-log",
            linger_ms=defaults.kafka_linger_ms,
        )
        up = record_cost(TrainingLog("bench", "agent-0", [sink]), args.records)
        sink.close()

        throughput_sink = KafkaJsonProducer(
            broker.bootstrap_servers, "bench_throughput", key="agent-0", kind="training-log", flush_timeout=60
        )
        log = TrainingLog("bench", "agent-0", [throughput_sink])
        started = time.perf_counter()
        for index in range(args.records * 5):
            log.write(
                TrainRecord(
                    update=index,
                    agent_step=index,
                    loss=0.1,
                    mean_q=1.0,
                    grad_norm=0.5,
                    learning_rate=1e-4,
                    n_step=1,
                    epsilon=0.01,
                    replay_sample_age_seconds=2.0,
                    replay_size=100_000,
                    dropped_transitions=0,
                    push_errors=0,
                    corrupt_entries=0,
                )
            )
        throughput_sink.close()
        sustained = throughput_sink.counters.delivered / (time.perf_counter() - started)

        down_sink = KafkaJsonProducer(
            broker.bootstrap_servers, "bench_outage", key="agent-0", kind="training-log", flush_timeout=0.1
        )
        broker.stop()
        down = record_cost(TrainingLog("bench", "agent-0", [down_sink]), args.records)
        down_sink.close()

    print(f"write() without sinks        {baseline * 1e6:7.2f} us")
    print(f"write() into Kafka, up       {up * 1e6:7.2f} us  (the sink's share: {(up - baseline) * 1e6:.2f} us)")
    print(f"write() into Kafka, down     {down * 1e6:7.2f} us  (ratio down/up {down / up:.2f})")
    print(f"sustained, emit to delivered  {sustained:,.0f} messages/s")
    for env_id, (step_seconds, episode_length) in envs.items():
        per_step = 1 / episode_length + train_records_per_step
        overhead = up * per_step / step_seconds
        print(
            f"{env_id:<14} bare step {step_seconds * 1e6:8.1f} us, episode {episode_length:7.1f} steps, "
            f"{per_step:.4f} records/step -> telemetry {overhead:.4%} of the bare step time"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
