"""The checked-in protobuf code must match proto/transition.proto."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2

from borg_game import transition_pb2
from tests.conftest import REPO_ROOT


def test_generated_code_is_not_stale(tmp_path: Path) -> None:
    descriptor_set = tmp_path / "transition.desc"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{REPO_ROOT / 'proto'}",
            f"--descriptor_set_out={descriptor_set}",
            str(REPO_ROOT / "proto" / "transition.proto"),
        ],
        check=True,
    )
    fresh = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes()).file[0]
    # The descriptor set spells out derived json_name values; generated code leaves them implicit.
    for message in fresh.message_type:
        for field in message.field:
            field.ClearField("json_name")
    checked_in = descriptor_pb2.FileDescriptorProto.FromString(transition_pb2.DESCRIPTOR.serialized_pb)
    assert checked_in == fresh, "proto/transition.proto changed: run `make proto` and commit the result"
