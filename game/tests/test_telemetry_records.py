"""The typed training-log records agree with schemas/training_log.schema.json."""

from __future__ import annotations

import json
from dataclasses import MISSING, fields
from typing import Any

import jsonschema
import pytest

from borg_game.telemetry import EpisodeRecord, EvalRecord, Record, TrainingLog, TrainRecord
from tests.conftest import REPO_ROOT

SCHEMA = json.loads((REPO_ROOT / "schemas" / "training_log.schema.json").read_text())
RECORD_TYPES: list[type[Record]] = [EpisodeRecord, TrainRecord, EvalRecord]


class ListSink:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def emit(self, record: dict[str, Any]) -> None:
        self.messages.append(record)

    def close(self) -> None:
        pass


def example(record_type: type[Record]) -> Record:
    values: dict[str, Any] = {"str": "CartPole-v1", "int": 3, "float": 0.5}
    return record_type(**{field.name: values[str(field.type)] for field in fields(record_type)})


@pytest.mark.parametrize("record_type", RECORD_TYPES, ids=lambda record_type: record_type.kind)
def test_record_fields_are_the_schemas_fields_of_its_kind(record_type: type[Record]) -> None:
    definition = SCHEMA["$defs"][record_type.kind]
    names = [field.name for field in fields(record_type)]
    assert set(names) == set(definition["properties"]) - {"type"}
    assert set(names) == set(definition["required"]) - {"type"}
    assert all(field.default is MISSING for field in fields(record_type)), "every field is required"


@pytest.mark.parametrize("record_type", RECORD_TYPES, ids=lambda record_type: record_type.kind)
def test_a_written_record_is_a_valid_message(record_type: type[Record]) -> None:
    sink = ListSink()
    log = TrainingLog("run", "agent-0", [sink])
    written = log.write(example(record_type))
    assert sink.messages == [written]
    assert written["type"] == record_type.kind
    validator = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    assert [error.message for error in validator.iter_errors(written)] == []
