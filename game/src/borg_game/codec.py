"""Transitions to protobuf bytes and back: pure functions, no I/O.

Observations are compressed with zstd. For frame stacks (Atari) the next observation is
`state[1:]` plus one new frame, so only that frame is stored: a Pong transition costs a few
hundred bytes instead of the 2 x 28 KB of raw stacks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import zstandard

from borg_game import transition_pb2 as pb

SCHEMA_VERSION = 1


class CorruptTransitionError(ValueError):
    """Stored bytes that are not a Transition this code can decode."""


@dataclass(frozen=True, slots=True)
class Transition:
    """One step of experience, decoded."""

    state: npt.NDArray[np.generic]
    action: int
    reward: float
    next_state: npt.NDArray[np.generic]
    terminated: bool
    truncated: bool
    agent_id: str = ""
    episode: int = 0
    step: int = 0
    timestamp_ns: int = 0


class TransitionCodec:
    """Encodes and decodes Transition messages; keeps its zstd contexts to reuse them."""

    def __init__(self, compression_level: int = 3, max_entry_bytes: int = 4_000_000) -> None:
        self._compressor = zstandard.ZstdCompressor(level=compression_level)
        self._decompressor = zstandard.ZstdDecompressor()
        self._max_entry_bytes = max_entry_bytes

    def encode(self, transition: Transition) -> bytes:
        """Serialize one transition; frame stacks store only the appended frame of next_state."""
        state = np.ascontiguousarray(transition.state)
        next_state = np.ascontiguousarray(transition.next_state)
        if state.shape != next_state.shape or state.dtype != next_state.dtype:
            raise ValueError(
                f"state {state.shape}/{state.dtype} and next_state {next_state.shape}/{next_state.dtype} differ"
            )
        message = pb.Transition(
            schema_version=SCHEMA_VERSION,
            codec=pb.CODEC_ZSTD,
            shape=list(state.shape),
            dtype=state.dtype.str,
            state=self._compressor.compress(state.tobytes()),
            action=int(transition.action),
            reward=float(transition.reward),
            terminated=bool(transition.terminated),
            truncated=bool(transition.truncated),
            agent_id=transition.agent_id,
            episode=transition.episode,
            step=transition.step,
            timestamp_ns=transition.timestamp_ns,
        )
        if _is_stack_append(state, next_state):
            message.next_state_layout = pb.NEXT_STATE_LAYOUT_STACK_APPEND
            message.next_state = self._compressor.compress(next_state[-1].tobytes())
        else:
            message.next_state_layout = pb.NEXT_STATE_LAYOUT_FULL
            message.next_state = self._compressor.compress(next_state.tobytes())
        return message.SerializeToString()

    def parse(self, data: bytes) -> pb.Transition:
        """Parse stored bytes into a message, refusing oversized or malformed entries."""
        if len(data) > self._max_entry_bytes:
            raise CorruptTransitionError(f"entry of {len(data)} bytes exceeds the {self._max_entry_bytes}-byte bound")
        message = pb.Transition()
        try:
            message.ParseFromString(data)
        except Exception as error:  # protobuf raises DecodeError, but its type varies by backend
            raise CorruptTransitionError(f"not a Transition message: {error}") from None
        if message.schema_version != SCHEMA_VERSION:
            raise CorruptTransitionError(f"unknown schema_version {message.schema_version}")
        return message

    def decode(self, data: bytes) -> Transition:
        """Decode stored bytes into arrays, bit-exact to what was encoded."""
        message = self.parse(data)
        state, next_state = self._observations(message)
        return Transition(
            state=state,
            action=message.action,
            reward=message.reward,
            next_state=next_state,
            terminated=message.terminated,
            truncated=message.truncated,
            agent_id=message.agent_id,
            episode=message.episode,
            step=message.step,
            timestamp_ns=message.timestamp_ns,
        )

    def _observations(self, message: pb.Transition) -> tuple[npt.NDArray[np.generic], npt.NDArray[np.generic]]:
        try:
            dtype = np.dtype(message.dtype)
        except TypeError as error:
            raise CorruptTransitionError(f"bad dtype {message.dtype!r}: {error}") from None
        shape = tuple(message.shape)
        size = int(np.prod(shape)) * dtype.itemsize
        if size > self._max_entry_bytes * 64:
            raise CorruptTransitionError(f"shape {shape} of {dtype} is implausibly large")
        state = self._array(message.state, message.codec, shape, dtype, size)
        if message.next_state_layout == pb.NEXT_STATE_LAYOUT_STACK_APPEND:
            if len(shape) < 2:
                raise CorruptTransitionError("stack-append layout needs a stacked observation")
            frame_shape = shape[1:]
            frame = self._array(message.next_state, message.codec, frame_shape, dtype, size // shape[0])
            next_state = np.concatenate([state[1:], frame[np.newaxis]], axis=0)
        elif message.next_state_layout == pb.NEXT_STATE_LAYOUT_FULL:
            next_state = self._array(message.next_state, message.codec, shape, dtype, size)
        else:
            raise CorruptTransitionError(f"unknown next_state_layout {message.next_state_layout}")
        return state, next_state

    def _array(
        self, blob: bytes, codec: int, shape: tuple[int, ...], dtype: np.dtype[np.generic], size: int
    ) -> npt.NDArray[np.generic]:
        try:
            if codec == pb.CODEC_ZSTD:
                raw = self._decompressor.decompress(blob, max_output_size=size)
            elif codec == pb.CODEC_NONE:
                raw = blob
            else:
                raise CorruptTransitionError(f"unknown codec {codec}")
        except zstandard.ZstdError as error:
            raise CorruptTransitionError(f"zstd: {error}") from None
        if len(raw) != size:
            raise CorruptTransitionError(f"observation has {len(raw)} bytes, shape {shape} needs {size}")
        return np.frombuffer(raw, dtype=dtype).reshape(shape)


def _is_stack_append(state: npt.NDArray[np.generic], next_state: npt.NDArray[np.generic]) -> bool:
    # Only multi-frame stacks of images qualify; vectors (CartPole) are stored whole.
    return state.ndim >= 3 and state.shape[0] > 1 and bool(np.array_equal(state[1:], next_state[:-1]))
