from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Codec(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CODEC_UNSPECIFIED: _ClassVar[Codec]
    CODEC_NONE: _ClassVar[Codec]
    CODEC_ZSTD: _ClassVar[Codec]

class NextStateLayout(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NEXT_STATE_LAYOUT_UNSPECIFIED: _ClassVar[NextStateLayout]
    NEXT_STATE_LAYOUT_FULL: _ClassVar[NextStateLayout]
    NEXT_STATE_LAYOUT_STACK_APPEND: _ClassVar[NextStateLayout]
CODEC_UNSPECIFIED: Codec
CODEC_NONE: Codec
CODEC_ZSTD: Codec
NEXT_STATE_LAYOUT_UNSPECIFIED: NextStateLayout
NEXT_STATE_LAYOUT_FULL: NextStateLayout
NEXT_STATE_LAYOUT_STACK_APPEND: NextStateLayout

class Transition(_message.Message):
    __slots__ = ("schema_version", "codec", "next_state_layout", "shape", "dtype", "state", "next_state", "action", "reward", "terminated", "truncated", "agent_id", "episode", "step", "timestamp_ns", "span", "later_rewards")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    NEXT_STATE_LAYOUT_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NEXT_STATE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    TERMINATED_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    EPISODE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    SPAN_FIELD_NUMBER: _ClassVar[int]
    LATER_REWARDS_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    codec: Codec
    next_state_layout: NextStateLayout
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: str
    state: bytes
    next_state: bytes
    action: int
    reward: float
    terminated: bool
    truncated: bool
    agent_id: str
    episode: int
    step: int
    timestamp_ns: int
    span: int
    later_rewards: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, schema_version: _Optional[int] = ..., codec: _Optional[_Union[Codec, str]] = ..., next_state_layout: _Optional[_Union[NextStateLayout, str]] = ..., shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[str] = ..., state: _Optional[bytes] = ..., next_state: _Optional[bytes] = ..., action: _Optional[int] = ..., reward: _Optional[float] = ..., terminated: _Optional[bool] = ..., truncated: _Optional[bool] = ..., agent_id: _Optional[str] = ..., episode: _Optional[int] = ..., step: _Optional[int] = ..., timestamp_ns: _Optional[int] = ..., span: _Optional[int] = ..., later_rewards: _Optional[_Iterable[float]] = ...) -> None: ...
