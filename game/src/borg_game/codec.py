"""Transitions to protobuf bytes and back: pure functions, no I/O.

Observations are compressed with zstd. For frame stacks (Atari) the next observation is
`state[1:]` plus one new frame, so only that frame is stored: a Pong transition costs a few
hundred bytes instead of the 2 x 28 KB of raw stacks. An n-step transition's next observation
is n frames on and shares fewer frames with its state, so it is stored whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import zstandard

from borg_game import transition_pb2 as pb

SCHEMA_VERSION = 1
# n-step entries (span > 1) say version 2: a reader from before n-step returns would take one
# for a one-step transition (its reward alone, bootstrapped from a state n steps on) and learn
# wrong targets; it skips a version it does not know instead. One-step entries stay version 1.
N_STEP_SCHEMA_VERSION = 2
KNOWN_SCHEMA_VERSIONS = (SCHEMA_VERSION, N_STEP_SCHEMA_VERSION)


class CorruptTransitionError(ValueError):
    """Stored bytes that are not a Transition this code can decode."""


@dataclass(frozen=True, slots=True)
class ObservationSpec:
    """Shape and dtype of one observation."""

    shape: tuple[int, ...]
    dtype: np.dtype[np.generic]

    @property
    def nbytes(self) -> int:
        """Bytes of one raw observation."""
        return int(np.prod(self.shape)) * self.dtype.itemsize


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
    # The raw rewards of the steps after this one that an n-step transition spans; next_state
    # then follows the last of them. Empty: a one-step transition.
    later_rewards: tuple[float, ...] = ()

    @property
    def span(self) -> int:
        """Steps the transition spans: 1 + its later rewards."""
        return 1 + len(self.later_rewards)


@dataclass(slots=True)
class StoredColumns:
    """Stored entries as a replay store keeps them, field by field: scalars decoded,
    observations still compressed, all of one observation spec. Oldest first.

    Columns, not an object per entry: a pull parses thousands of entries, and a tuple per
    entry (each one tracked by the garbage collector, then transposed into columns) cost
    more than the protobuf parse itself. `compressions` and `layouts` are opaque to the
    store: it hands them back to `fill`/`fill_rows`.
    """

    spec: ObservationSpec
    compressions: list[int]
    layouts: list[int]
    state_blobs: list[bytes]
    next_blobs: list[bytes]
    actions: list[int]
    rewards: list[float]
    later_rewards: list[tuple[float, ...]]
    terminated: list[bool]
    timestamps_ns: list[int]

    def __len__(self) -> int:
        return len(self.actions)

    def newest(self, count: int) -> StoredColumns:
        """The last `count` entries (all of them when there are fewer)."""
        skip = max(0, len(self) - count)
        if skip == 0:
            return self
        return StoredColumns(
            self.spec,
            self.compressions[skip:],
            self.layouts[skip:],
            self.state_blobs[skip:],
            self.next_blobs[skip:],
            self.actions[skip:],
            self.rewards[skip:],
            self.later_rewards[skip:],
            self.terminated[skip:],
            self.timestamps_ns[skip:],
        )


class TransitionCodec:
    """Encodes and decodes Transition messages; keeps its zstd contexts to reuse them."""

    def __init__(self, compression_level: int = 3, max_entry_bytes: int = 4_000_000) -> None:
        self._compressor = zstandard.ZstdCompressor(level=compression_level)
        self._decompressor = zstandard.ZstdDecompressor()
        self._max_entry_bytes = max_entry_bytes
        # Every entry of a hive has the same few (dtype, shape, layout): checking them once
        # instead of per entry halves what pulling a mirror costs. Bounded against junk.
        self._specs: dict[tuple[str, tuple[int, ...], int], ObservationSpec] = {}

    def encode(self, transition: Transition) -> bytes:
        """Serialize one transition; frame stacks store only the appended frame of next_state."""
        state = np.ascontiguousarray(transition.state)
        next_state = np.ascontiguousarray(transition.next_state)
        if state.shape != next_state.shape or state.dtype != next_state.dtype:
            raise ValueError(
                f"state {state.shape}/{state.dtype} and next_state {next_state.shape}/{next_state.dtype} differ"
            )
        message = pb.Transition(
            schema_version=SCHEMA_VERSION if transition.span == 1 else N_STEP_SCHEMA_VERSION,
            codec=pb.CODEC_ZSTD,
            shape=list(state.shape),
            dtype=state.dtype.str,
            state=self._compressor.compress(state.data),  # the array's own buffer: no copy
            action=int(transition.action),
            reward=float(transition.reward),
            terminated=bool(transition.terminated),
            truncated=bool(transition.truncated),
            agent_id=transition.agent_id,
            episode=transition.episode,
            step=transition.step,
            timestamp_ns=transition.timestamp_ns,
            span=transition.span,
            later_rewards=transition.later_rewards,
        )
        if _is_stack_append(state, next_state):
            message.next_state_layout = pb.NEXT_STATE_LAYOUT_STACK_APPEND
            message.next_state = self._compressor.compress(next_state[-1].data)
        else:
            message.next_state_layout = pb.NEXT_STATE_LAYOUT_FULL
            message.next_state = self._compressor.compress(next_state.data)
        return message.SerializeToString()

    def parse(self, data: bytes) -> pb.Transition:
        """Parse stored bytes into a message, refusing oversized or malformed entries."""
        message = pb.Transition()
        self._parse_into(message, data)
        return message

    def stored_columns(
        self,
        entries: Iterable[bytes],
        spec: ObservationSpec | None,
        skip: Callable[[CorruptTransitionError], None],
    ) -> StoredColumns | None:
        """Parse stored bytes into columns, observations left compressed (the mirror's pull).

        Every entry kept has observations of `spec` (None: those of the first entry that
        parses); one that does not, or cannot be parsed, is left out and handed to `skip`.
        None when `spec` is None and no entry parsed.
        """
        message = pb.Transition()  # one message for all: ParseFromString clears it first
        compressions: list[int] = []
        layouts: list[int] = []
        state_blobs: list[bytes] = []
        next_blobs: list[bytes] = []
        actions: list[int] = []
        rewards: list[float] = []
        later_rewards: list[tuple[float, ...]] = []
        terminated: list[bool] = []
        timestamps_ns: list[int] = []
        # The (dtype, shape, layout) last found to be `spec`: nearly every entry repeats it, and
        # comparing it costs half the spec lookup, whose key needs a tuple of the repeated field.
        matched: tuple[str, list[int], int] | None = None
        for data in entries:
            try:
                self._parse_into(message, data)
                layout = message.next_state_layout
                described = (message.dtype, message.shape[:], layout)
                if described != matched:
                    found = self.spec(message)
                    if spec is None:
                        spec = found
                    elif found is not spec and found != spec:
                        raise CorruptTransitionError(f"observation {found} differs from this agent's {spec}")
                    matched = described
                # The scalar span first: reading the repeated field costs several times more, and
                # nearly every entry of a one-step hive has none.
                later = _later_rewards(message) if message.span > 1 else ()
            except CorruptTransitionError as error:
                skip(error)
                continue
            compressions.append(message.codec)
            layouts.append(layout)
            state_blobs.append(message.state)
            next_blobs.append(message.next_state)
            actions.append(message.action)
            rewards.append(message.reward)
            later_rewards.append(later)
            terminated.append(message.terminated)
            timestamps_ns.append(message.timestamp_ns)
        if spec is None:
            return None
        return StoredColumns(
            spec,
            compressions,
            layouts,
            state_blobs,
            next_blobs,
            actions,
            rewards,
            later_rewards,
            terminated,
            timestamps_ns,
        )

    def decode(self, data: bytes) -> Transition:
        """Decode stored bytes into arrays, bit-exact to what was encoded."""
        message = self.parse(data)
        spec = self.spec(message)
        state = np.empty(spec.shape, spec.dtype)
        next_state = np.empty(spec.shape, spec.dtype)
        self.fill(message.codec, message.next_state_layout, message.state, message.next_state, state, next_state)
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
            later_rewards=_later_rewards(message) if message.span > 1 else (),
        )

    def spec(self, message: pb.Transition) -> ObservationSpec:
        """Shape and dtype of the message's observations, checked for plausibility."""
        key = (message.dtype, tuple(message.shape), message.next_state_layout)
        known = self._specs.get(key)
        if known is not None:
            return known
        try:
            dtype = np.dtype(message.dtype)
        except TypeError as error:
            raise CorruptTransitionError(f"bad dtype {message.dtype!r}: {error}") from None
        shape = tuple(int(dimension) for dimension in message.shape)
        if not shape or min(shape) <= 0:
            raise CorruptTransitionError(f"bad observation shape {shape}")
        if int(np.prod(shape)) * dtype.itemsize > self._max_entry_bytes * 64:
            raise CorruptTransitionError(f"shape {shape} of {dtype} is implausibly large")
        if message.next_state_layout == pb.NEXT_STATE_LAYOUT_STACK_APPEND and len(shape) < 2:
            raise CorruptTransitionError("stack-append layout needs a stacked observation")
        spec = ObservationSpec(shape, dtype)
        if len(self._specs) < 16:
            self._specs[key] = spec
        return spec

    def _parse_into(self, message: pb.Transition, data: bytes) -> None:
        if len(data) > self._max_entry_bytes:
            raise CorruptTransitionError(f"entry of {len(data)} bytes exceeds the {self._max_entry_bytes}-byte bound")
        try:
            message.ParseFromString(data)
        except Exception as error:  # protobuf raises DecodeError, but its type varies by backend
            raise CorruptTransitionError(f"not a Transition message: {error}") from None
        if message.schema_version not in KNOWN_SCHEMA_VERSIONS:
            raise CorruptTransitionError(f"unknown schema_version {message.schema_version}")

    def fill(
        self,
        codec: int,
        layout: int,
        state_blob: bytes,
        next_blob: bytes,
        state_out: npt.NDArray[np.generic],
        next_out: npt.NDArray[np.generic],
    ) -> None:
        """Decompress one transition's observations into preallocated arrays of its shape."""
        self._decompress_into(state_blob, codec, state_out)
        if layout == pb.NEXT_STATE_LAYOUT_STACK_APPEND:
            next_out[:-1] = state_out[1:]
            self._decompress_into(next_blob, codec, next_out[-1])
        elif layout == pb.NEXT_STATE_LAYOUT_FULL:
            self._decompress_into(next_blob, codec, next_out)
        else:
            raise CorruptTransitionError(f"unknown next_state_layout {layout}")

    def fill_rows(
        self,
        codecs: Sequence[int],
        layouts: Sequence[int],
        state_blobs: Sequence[bytes],
        next_blobs: Sequence[bytes],
        states_out: npt.NDArray[np.generic],
        next_out: npt.NDArray[np.generic],
    ) -> None:
        """`fill` for a batch: row i of the C-contiguous outputs from transition i.

        The sampler's hot path, bit-exact to `fill` per row at about half its cost: each
        decompressed blob is copied once, through a flat byte view, and the frames that a
        stack-append next_state shares with its state are copied for the whole batch at once.
        """
        rows = len(state_blobs)
        if not len(codecs) == len(layouts) == len(next_blobs) == len(states_out) == len(next_out) == rows:
            raise ValueError(f"fill_rows needs a codec, a layout, two blobs and two output rows for each of {rows}")
        if not (states_out.flags.c_contiguous and next_out.flags.c_contiguous):
            raise ValueError("fill_rows writes through flat views: the outputs must be C-contiguous")
        if rows == 0:
            return
        row_bytes = states_out[0].nbytes
        frame_bytes = row_bytes // states_out.shape[1] if states_out.ndim >= 3 else row_bytes
        states_flat = states_out.reshape(-1).view(np.uint8).data  # writable flat byte views of the rows
        next_flat = next_out.reshape(-1).view(np.uint8).data
        for row in range(rows):
            start, end = row * row_bytes, (row + 1) * row_bytes
            states_flat[start:end] = self._raw(state_blobs[row], codecs[row], row_bytes)
            if layouts[row] == pb.NEXT_STATE_LAYOUT_STACK_APPEND:
                next_flat[end - frame_bytes : end] = self._raw(next_blobs[row], codecs[row], frame_bytes)
            elif layouts[row] == pb.NEXT_STATE_LAYOUT_FULL:
                next_flat[start:end] = self._raw(next_blobs[row], codecs[row], row_bytes)
            else:
                raise CorruptTransitionError(f"unknown next_state_layout {layouts[row]}")
        appended = np.fromiter((layout == pb.NEXT_STATE_LAYOUT_STACK_APPEND for layout in layouts), bool, rows)
        if appended.all():
            next_out[:, :-1] = states_out[:, 1:]
        elif appended.any():
            next_out[appended, :-1] = states_out[appended, 1:]

    def _decompress_into(self, blob: bytes, codec: int, out: npt.NDArray[np.generic]) -> None:
        raw = self._raw(blob, codec, out.nbytes)
        out[...] = np.frombuffer(raw, dtype=out.dtype).reshape(out.shape)

    def _raw(self, blob: bytes, codec: int, expected_bytes: int) -> bytes:
        """The decompressed bytes of one observation (or frame), checked for their length."""
        try:
            if codec == pb.CODEC_ZSTD:
                raw: bytes = self._decompressor.decompress(blob, max_output_size=expected_bytes)
            elif codec == pb.CODEC_NONE:
                raw = blob
            else:
                raise CorruptTransitionError(f"unknown codec {codec}")
        except zstandard.ZstdError as error:
            raise CorruptTransitionError(f"zstd: {error}") from None
        if len(raw) != expected_bytes:
            raise CorruptTransitionError(f"observation has {len(raw)} bytes, {expected_bytes} expected")
        return raw


def _later_rewards(message: pb.Transition) -> tuple[float, ...]:
    """The later rewards of a message that spans several steps (a copy: messages are reused),
    checked against its span."""
    later = tuple(message.later_rewards)
    if len(later) != message.span - 1:
        raise CorruptTransitionError(f"span {message.span} with {len(later)} later rewards")
    return later


def _is_stack_append(state: npt.NDArray[np.generic], next_state: npt.NDArray[np.generic]) -> bool:
    # Only multi-frame stacks of images qualify; vectors (CartPole) are stored whole.
    # Bytes, not values: what decode rebuilds from state[1:] must be bit-exact (-0.0 is not 0.0),
    # and comparing two contiguous byte strings is twice as fast as np.array_equal here.
    return state.ndim >= 3 and state.shape[0] > 1 and state[1:].tobytes() == next_state[:-1].tobytes()
