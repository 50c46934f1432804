from __future__ import annotations

import numpy as np
import pytest
import zstandard

from borg_game import transition_pb2 as pb
from borg_game.codec import CorruptTransitionError, ObservationSpec, StoredColumns, Transition, TransitionCodec


def frame_stack_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    frames = rng.integers(0, 256, size=(5, 84, 84), dtype=np.uint8)
    return frames[:4].copy(), frames[1:].copy()


def test_frame_stack_round_trip_is_bit_exact_and_stores_one_new_frame() -> None:
    rng = np.random.default_rng(0)
    state, next_state = frame_stack_pair(rng)
    codec = TransitionCodec()
    transition = Transition(state, 3, -1.0, next_state, True, False, "agent-7", 12, 345, 1_700_000_000_000_000_000)
    data = codec.encode(transition)
    message = pb.Transition.FromString(data)
    assert message.next_state_layout == pb.NEXT_STATE_LAYOUT_STACK_APPEND
    decoded = codec.decode(data)
    assert decoded.state.dtype == np.uint8 and decoded.next_state.dtype == np.uint8
    assert np.array_equal(decoded.state, state)
    assert np.array_equal(decoded.next_state, next_state)
    assert (decoded.action, decoded.reward, decoded.terminated, decoded.truncated) == (3, -1.0, True, False)
    assert (decoded.agent_id, decoded.episode, decoded.step) == ("agent-7", 12, 345)
    assert decoded.timestamp_ns == 1_700_000_000_000_000_000


def test_stack_that_does_not_shift_is_stored_whole() -> None:
    rng = np.random.default_rng(1)
    state = rng.integers(0, 256, size=(4, 84, 84), dtype=np.uint8)
    next_state = rng.integers(0, 256, size=(4, 84, 84), dtype=np.uint8)  # e.g. across a reset
    codec = TransitionCodec()
    data = codec.encode(Transition(state, 0, 0.0, next_state, False, True))
    assert pb.Transition.FromString(data).next_state_layout == pb.NEXT_STATE_LAYOUT_FULL
    assert np.array_equal(codec.decode(data).next_state, next_state)


def test_float_vectors_round_trip() -> None:
    state = np.array([0.1, -2.5, 3.25, 1e-7], dtype=np.float32)
    next_state = np.array([0.2, -2.0, 3.0, 0.0], dtype=np.float32)
    codec = TransitionCodec()
    decoded = codec.decode(codec.encode(Transition(state, 1, 1.0, next_state, False, False)))
    assert decoded.state.tobytes() == state.tobytes()
    assert decoded.next_state.tobytes() == next_state.tobytes()


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00\x01garbage" * 10, np.random.default_rng(2).bytes(300)],
    ids=["empty", "garbage", "random"],
)
def test_foreign_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(CorruptTransitionError):
        TransitionCodec().decode(data)


def test_truncated_message_is_refused() -> None:
    rng = np.random.default_rng(3)
    state, next_state = frame_stack_pair(rng)
    data = TransitionCodec().encode(Transition(state, 0, 0.0, next_state, False, False))
    with pytest.raises(CorruptTransitionError):
        TransitionCodec().decode(data[: len(data) // 2])


def test_oversized_entry_is_refused_unparsed() -> None:
    with pytest.raises(CorruptTransitionError, match="exceeds"):
        TransitionCodec(max_entry_bytes=1024).decode(b"\x00" * 2048)


def test_a_schema_version_this_reader_does_not_know_is_refused() -> None:
    codec = TransitionCodec()
    vector = np.zeros(4, np.float32)
    message = codec.parse(codec.encode(Transition(vector, 0, 0.0, vector, False, False)))
    message.schema_version = 3
    with pytest.raises(CorruptTransitionError, match="unknown schema_version 3"):
        codec.decode(message.SerializeToString())


def test_batch_fill_is_bit_exact_to_decoding_one_by_one() -> None:
    """The sampler's batch path (mixed layouts, both codecs) equals decode() row by row."""
    rng = np.random.default_rng(4)
    codec = TransitionCodec()
    frames = rng.integers(0, 256, size=(12, 84, 84), dtype=np.uint8)
    transitions = [Transition(frames[i : i + 4], i, 0.0, frames[i + 1 : i + 5], False, False) for i in range(6)]
    transitions.append(Transition(frames[0:4], 0, 0.0, frames[6:10], False, True))  # across a reset: stored whole
    raw = pb.Transition.FromString(codec.encode(transitions[0]))
    raw.codec = pb.CODEC_NONE
    raw.state = frames[0:4].tobytes()
    raw.next_state = frames[4].tobytes()
    messages = [pb.Transition.FromString(codec.encode(transition)) for transition in transitions] + [raw]
    states = np.empty((len(messages), 4, 84, 84), dtype=np.uint8)
    next_states = np.empty_like(states)
    codec.fill_rows(
        [message.codec for message in messages],
        [message.next_state_layout for message in messages],
        [message.state for message in messages],
        [message.next_state for message in messages],
        states,
        next_states,
    )
    assert [message.next_state_layout for message in messages].count(pb.NEXT_STATE_LAYOUT_FULL) == 1
    for row, message in enumerate(messages):
        expected = codec.decode(message.SerializeToString())
        assert np.array_equal(states[row], expected.state)
        assert np.array_equal(next_states[row], expected.next_state)


def test_batch_fill_refuses_a_blob_of_the_wrong_size() -> None:
    codec = TransitionCodec()
    rng = np.random.default_rng(5)
    state, next_state = frame_stack_pair(rng)
    message = pb.Transition.FromString(codec.encode(Transition(state, 0, 0.0, next_state, False, False)))
    short = zstandard.ZstdCompressor().compress(b"\x00" * 100)
    out = np.empty((1, 4, 84, 84), dtype=np.uint8)
    with pytest.raises(CorruptTransitionError, match="100 bytes"):
        codec.fill_rows([message.codec], [message.next_state_layout], [short], [message.next_state], out, out.copy())


def test_known_observation_specs_are_remembered_and_others_still_checked() -> None:
    codec = TransitionCodec()
    message = pb.Transition.FromString(
        codec.encode(Transition(np.zeros(4, np.float32), 0, 0.0, np.ones(4, np.float32), False, False))
    )
    assert codec.spec(message) is codec.spec(message)
    message.dtype = "not-a-dtype"
    with pytest.raises(CorruptTransitionError, match="bad dtype"):
        codec.spec(message)


def test_stored_columns_keep_the_entries_of_one_spec_in_order_and_skip_the_rest() -> None:
    rng = np.random.default_rng(5)
    codec = TransitionCodec()
    stacks = [frame_stack_pair(rng) for _ in range(3)]
    vector = np.zeros(4, dtype=np.float32)
    entries = [
        b"\x00\x01garbage",  # undecodable: skipped, and it fixes no spec
        codec.encode(Transition(stacks[0][0], 2, 1.0, stacks[0][1], False, False, timestamp_ns=10)),
        codec.encode(Transition(vector, 1, 0.0, vector, True, False)),  # another observation spec
        codec.encode(
            Transition(stacks[1][0], 5, -1.0, stacks[1][1], True, False, timestamp_ns=11, later_rewards=(0.5, 1.0))
        ),
        codec.encode(Transition(stacks[2][0], 0, 0.5, stacks[2][1], False, True, timestamp_ns=12)),
    ]
    skipped: list[CorruptTransitionError] = []
    columns = codec.stored_columns(entries, None, skipped.append)

    assert columns is not None and len(columns) == 3
    assert columns.spec.shape == (4, 84, 84) and columns.spec.dtype == np.uint8
    assert len(skipped) == 2 and "differs" in str(skipped[1])
    assert (columns.actions, columns.rewards, columns.terminated) == ([2, 5, 0], [1.0, -1.0, 0.5], [False, True, False])
    assert columns.timestamps_ns == [10, 11, 12]
    assert columns.later_rewards == [(), (0.5, 1.0), ()]
    states, next_states = np.empty((3, 4, 84, 84), np.uint8), np.empty((3, 4, 84, 84), np.uint8)
    codec.fill_rows(columns.compressions, columns.layouts, columns.state_blobs, columns.next_blobs, states, next_states)
    for row, (state, next_state) in enumerate(stacks):
        assert np.array_equal(states[row], state) and np.array_equal(next_states[row], next_state)
    newest = columns.newest(2)
    assert newest.actions == [5, 0] and newest.state_blobs == columns.state_blobs[1:]
    assert newest.later_rewards == [(0.5, 1.0), ()]

    # A spec given up front: entries of any other are skipped, even the first one.
    assert codec.stored_columns(entries[1:2], ObservationSpec((4,), np.dtype(np.float32)), skipped.append) == (
        StoredColumns(ObservationSpec((4,), np.dtype(np.float32)), [], [], [], [], [], [], [], [], [])
    )
    assert len(skipped) == 3
    assert codec.stored_columns(entries[:1], None, skipped.append) is None
