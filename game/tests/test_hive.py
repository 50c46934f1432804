"""The local hive (`make run`) end to end: real processes, a real embedded Redis."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import torch

from borg_game import transition_pb2 as pb
from borg_game.checkpoint import env_model_store, list_checkpoints
from borg_game.hive import tensorboard_hint
from tests.conftest import agent_environment

# CartPole-v1 runs with its preset (borg_game.settings.ENV_PRESETS).
CARTPOLE = {"env_id": "CartPole-v1", "seed": 1}


def run_hive(tmp_path: Path, agents: int, timeout: float, **settings: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "borg_game.hive", "--agents", str(agents), "--progress-interval", "10"],
        cwd=tmp_path,
        env=agent_environment(**settings),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_log(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_two_agents_learn_cartpole_through_the_shared_memory(tmp_path: Path) -> None:
    completed = run_hive(
        tmp_path,
        agents=2,
        timeout=900,
        total_steps=25_000,  # per agent: 50k hive steps
        eval_interval=2500,
        tensorboard_dir="",
        training_log_file="log.jsonl",
        **CARTPOLE,
    )
    assert completed.returncode == 0, completed.stderr
    records = read_log(tmp_path / "log.jsonl")
    evals = sorted(
        (int(str(record["agent_step"])), float(str(record["eval_return_mean"])), str(record["agent_id"]))
        for record in records
        if record["type"] == "eval"
    )
    assert {agent for _, _, agent in evals} == {"agent-0", "agent-1"}
    solved = [(step, score, agent) for step, score, agent in evals if score >= 195]
    print("evaluations (agent step, mean return, agent):", evals)
    assert solved, f"no evaluation reached 195 within 50k hive steps: {evals}"
    step, score, agent = solved[0]
    # Both agents played about as many steps, so the hive had played about twice this.
    print(f"first evaluation >= 195: {agent} at agent step {step} (~{2 * step} hive steps), mean {score}")
    # Each agent learned from the other's transitions too: its episodes interleave in one memory.
    episodes = [record for record in records if record["type"] == "episode"]
    assert max(int(str(record["hive_step"])) for record in episodes) > 25_000


@pytest.mark.slow
def test_pong_smoke_two_agents_learning_on_cpu(tmp_path: Path) -> None:
    completed = run_hive(
        tmp_path,
        agents=2,
        timeout=900,
        env_id="ALE/Pong-v5",
        total_steps=2500,
        learning_starts=1000,
        eval_interval=0,
        checkpoint_interval=2000,
        training_log_file="log.jsonl",
        train_log_interval=50,
        replay_capacity=4000,
        **{"tensorboard_dir": "runs"},
    )
    assert completed.returncode == 0, completed.stderr
    checkpoints = list_checkpoints(env_model_store(tmp_path / "models", "ALE/Pong-v5"))
    assert {path.name.split("-")[2] for path in checkpoints} == {"0", "1"}  # checkpoint-agent-<i>-<step>
    records = read_log(tmp_path / "log.jsonl")
    assert any(record["type"] == "train" for record in records), "no training happened"
    assert list((tmp_path / "runs").rglob("events.out.tfevents.*")), "no TensorBoard event files"
    losses = [float(str(record["loss"])) for record in records if record["type"] == "train"]
    assert all(loss == loss and loss < 1e3 for loss in losses)  # finite


def test_pong_transitions_in_redis_are_small_and_decode(tmp_path: Path) -> None:
    """Bytes per Pong transition, as Redis accounts them (MEMORY USAGE of the list)."""
    from borg_game.redis_server import EmbeddedRedis

    with EmbeddedRedis() as server:
        agent = subprocess.run(
            [sys.executable, "-m", "borg_game"],
            cwd=tmp_path,
            env=agent_environment(
                redis_url=server.url,
                env_id="ALE/Pong-v5",
                agent_index=0,
                total_steps=1500,
                learning="false",
                eval_interval=0,
                tensorboard_dir="",
            ),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert agent.returncode == 0, agent.stderr
        client = redis.Redis.from_url(server.url)
        key, counter = "transitions:ALE/Pong-v5", "transitions:pushed:ALE/Pong-v5"
        count = int(client.llen(key))
        assert count == 1500 == int(client.get(counter) or 0)
        usage = int(client.memory_usage(key, samples=0) or 0)
        per_transition = usage / count
        print(f"Pong: {per_transition:.0f} bytes per transition in Redis ({count} transitions)")
        assert per_transition < 2048
        message = pb.Transition.FromString(client.lindex(key, 0) or b"")  # type: ignore[arg-type]
        assert list(message.shape) == [4, 84, 84] and message.dtype == "|u1"
        assert message.next_state_layout == pb.NEXT_STATE_LAYOUT_STACK_APPEND


def test_ctrl_c_stops_every_process_with_final_checkpoints(tmp_path: Path) -> None:
    hive = subprocess.Popen(
        [sys.executable, "-m", "borg_game.hive", "--agents", "2", "--progress-interval", "1"],
        cwd=tmp_path,
        env=agent_environment(
            env_id="CartPole-v1",
            total_steps=10_000_000,
            learning_starts=500,
            eval_interval=0,
            checkpoint_interval=10_000_000,
            mlp_hidden_sizes="32",
            tensorboard_dir="",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal gives it
    )
    assert hive.stdout is not None
    # Ctrl-C once the console shows both agents past step 0: each has something to checkpoint.
    deadline = time.monotonic() + 300
    steps: dict[str, int] = {}
    lines = []
    while time.monotonic() < deadline and not (len(steps) == 2 and min(steps.values()) > 0):
        line = hive.stdout.readline()
        lines.append(line)
        agent_line = re.match(r"\s+(agent-\d+)\s.*\bstep\s+([\d,]+) of", line)
        if agent_line:
            steps[agent_line[1]] = int(agent_line[2].replace(",", ""))
    assert len(steps) == 2 and min(steps.values()) > 0, "".join(lines)
    children = [
        int(pid)
        for pid in subprocess.run(["pgrep", "-P", str(hive.pid)], capture_output=True, text=True).stdout.split()
    ]
    assert len(children) >= 3  # redis-server and two agents (plus the monitor when installed)
    os.killpg(hive.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
    output, _ = hive.communicate(timeout=60)
    assert hive.returncode == 0, "".join(lines) + output
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    checkpoints = list_checkpoints(env_model_store(tmp_path / "models", "CartPole-v1"))
    assert len(checkpoints) == 2
    for path in checkpoints:
        assert torch.load(path, weights_only=True)["step"] > 0


@pytest.mark.slow
def test_two_minute_soak_of_four_agents_ends_clean(tmp_path: Path) -> None:
    """The CI variant of `make soak`: 4 Pong agents learning for 2 minutes, then Ctrl-C."""
    report = tmp_path / "soak.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "borg_game.soak",
            "--minutes",
            "2",
            "--agents",
            "4",
            "--interval",
            "15",
            "--workdir",
            str(tmp_path / "soak"),
            "--report",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(completed.stdout[-3000:])
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    result = json.loads(report.read_text())
    assert result["tracebacks"] == 0 and result["crashed"] == []
    last = result["samples"][-1]
    assert {f"agent-{index}" for index in range(4)} <= set(last["rss_mib"])
    assert last["pushed"] > 0


def test_agents_of_one_hive_run_with_their_own_settings(tmp_path: Path) -> None:
    """Individually configured agents: CONFIG_AGENT<i>__ overrides, read back from each agent's own records."""
    completed = run_hive(
        tmp_path,
        agents=2,
        timeout=600,
        total_steps=600,
        learning_starts=200,
        train_frequency=16,
        batch_size=16,
        train_log_interval=5,
        eval_interval=300,
        eval_episodes=1,
        mlp_hidden_sizes="16",
        tensorboard_dir="",
        exploration="ape_x",
        AGENT0__training_log_file="agent-0.jsonl",
        AGENT1__training_log_file="agent-1.jsonl",
        AGENT1__learning_rate=0.002,
        AGENT1__eval_epsilon=0.5,
        AGENT1__n_step=3,
        **CARTPOLE,
    )
    assert completed.returncode == 0, completed.stderr
    expected = {0: (5e-4, 0.0, 1), 1: (0.002, 0.5, 3)}  # agent 0: the CartPole preset
    for index, (learning_rate, eval_epsilon, n_step) in expected.items():
        records = read_log(tmp_path / f"agent-{index}.jsonl")
        assert {record["agent_id"] for record in records} == {f"agent-{index}"}
        assert {(record["exploration"], record["agent_index"], record["hive_size"]) for record in records} == {
            ("ape_x", index, 2)
        }
        trains = [record for record in records if record["type"] == "train"]
        evals = [record for record in records if record["type"] == "eval"]
        assert trains and evals
        assert {record["learning_rate"] for record in trains} == {learning_rate}
        assert {record["n_step"] for record in trains} == {n_step}
        assert {record["eval_epsilon"] for record in evals} == {eval_epsilon}
        # ape_x with N=2: agent 0 explores at 0.4, agent 1 at 0.4 ** 8.
        assert {record["epsilon"] for record in records if "epsilon" in record} == {0.4 ** (1 + 7 * index)}


def test_tensorboard_hint_names_the_directory_or_says_it_is_off() -> None:
    assert tensorboard_hint(Path("runs")) == "TensorBoard: tensorboard --logdir runs"
    assert tensorboard_hint(None) == "TensorBoard off (CONFIG_tensorboard_dir is empty)"
