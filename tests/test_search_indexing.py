"""The index templates on a real Elasticsearch, fed the real game's and monitor's messages
through the Logstash pipeline (emulated from its parsed config)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from borg_harness.search_server import SearchServer

from conftest import (
    SCHEMAS,
    IndexedStack,
    StackRun,
    load_schema,
    load_templates,
    run_template_setup,
)
from search_client import es_request

# JSON Schema type -> the Elasticsearch field types that hold it faithfully.
COMPATIBLE_TYPES = {
    "string": {"keyword"},
    "date-time": {"date"},
    "integer": {"integer", "long"},
    "number": {"double", "float"},
}
# Fields Logstash adds to every event, beside the message's own.
LOGSTASH_FIELDS = {"@timestamp": "date", "tags": "keyword"}


def schema_properties(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every property a message of the schema may have (all `oneOf`/`$defs` variants merged)."""
    properties = dict(schema.get("properties", {}))
    for definition in schema.get("$defs", {}).values():
        for name, spec in definition.get("properties", {}).items():
            if "type" in spec or "const" in spec or "format" in spec or name not in properties:
                properties[name] = {**properties.get(name, {}), **spec}
    return properties


def json_kind(spec: dict[str, Any]) -> str:
    """The kind of a property: string, date-time, integer or number (null allowed besides)."""
    if spec.get("format") == "date-time":
        return "date-time"
    if "const" in spec:
        return "integer" if isinstance(spec["const"], int) else "string"
    if "enum" in spec:
        return "string"
    types = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
    (kind,) = [t for t in types if t != "null"]
    return str(kind)


def template_for(topic: str) -> dict[str, Any]:
    (template,) = [t for t in load_templates().values() if t["_meta"]["schema"] == f"schemas/{SCHEMAS[topic]}"]
    return template


def validator(topic: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        load_schema(topic), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


@pytest.mark.parametrize("topic", sorted(SCHEMAS))
def test_every_schema_property_has_an_explicit_mapping_of_a_fitting_type(topic: str) -> None:
    mapping = template_for(topic)["template"]["mappings"]
    fields = {name: spec["type"] for name, spec in mapping["properties"].items()}
    properties = schema_properties(load_schema(topic))

    wrong = {
        name: (json_kind(spec), fields.get(name))
        for name, spec in properties.items()
        if fields.get(name) not in COMPATIBLE_TYPES[json_kind(spec)]
    }
    assert wrong == {}, "schema property -> (JSON kind, mapped type)"
    assert set(fields) - set(properties) == set(LOGSTASH_FIELDS), "mapped fields that no message has"
    assert {name: fields[name] for name in LOGSTASH_FIELDS} == LOGSTASH_FIELDS
    for id_field in ("run_id", "agent_id", "host", "type"):
        assert fields[id_field] == "keyword"
    # Unknown fields stay in _source but never get guessed mappings.
    assert mapping["dynamic"] is False


def test_templates_have_one_shard_and_no_replica_on_one_node() -> None:
    for name, template in load_templates().items():
        settings = template["template"]["settings"]
        assert (settings["number_of_shards"], settings["number_of_replicas"]) == (1, 0), name
        assert template["index_patterns"] == [f"{name}-*"], "one template per index family, named after it"


def test_setup_script_installs_the_templates_again_without_change(
    search_server: SearchServer, templates_installed: subprocess.CompletedProcess[str], compose_model: dict[str, Any]
) -> None:
    before = es_request(search_server.url, "GET", "/_index_template/borg-*", auth=search_server.auth)
    again = run_template_setup(search_server.url, compose_model)
    assert again.returncode == 0, again.stderr
    after = es_request(search_server.url, "GET", "/_index_template/borg-*", auth=search_server.auth)

    installed = {entry["name"]: entry["index_template"] for entry in after["index_templates"]}
    assert set(installed) == set(load_templates())
    for name, template in load_templates().items():
        assert installed[name]["index_patterns"] == template["index_patterns"]
        assert installed[name]["template"]["mappings"] == template["template"]["mappings"]
    assert before == after


def test_setup_script_fails_when_it_finds_no_templates(
    search_server: SearchServer, tmp_path: Path, compose_model: dict[str, Any]
) -> None:
    result = run_template_setup(search_server.url, compose_model, template_dir=tmp_path)
    assert result.returncode != 0
    assert "no templates" in result.stderr


def test_every_kafka_message_is_indexed_under_its_topics_index(
    stack_run: StackRun, indexed_stack: IndexedStack
) -> None:
    assert indexed_stack.bulk_response["errors"] is False, [
        item for item in indexed_stack.bulk_response["items"] if item["index"].get("error")
    ][:3]
    routed = {(record.topic, request.index.rsplit("-", 1)[0]) for record, request in indexed_stack.requests}
    assert routed == {("training_log", "borg-training-log"), ("memory_monitoring", "borg-memory-monitoring")}
    assert len(indexed_stack.requests) == len(stack_run.records), "every message makes exactly one document"
    ids = [(request.index, request.document_id) for _, request in indexed_stack.requests]
    assert len(set(ids)) == len(ids), "document ids (partition-offset-time) are unique per index"


def test_the_training_log_on_kafka_is_the_agents_own_log(stack_run: StackRun) -> None:
    def canonical(records: list[dict[str, Any]]) -> list[str]:
        return sorted(json.dumps(record, sort_keys=True) for record in records)

    kafka_messages = stack_run.messages("training_log")
    assert canonical(kafka_messages) == canonical(stack_run.agent_log_lines)
    assert {message["type"] for message in kafka_messages} == {"episode", "train", "eval"}
    assert len({message["agent_id"] for message in kafka_messages}) == 2


@pytest.mark.parametrize("topic", sorted(SCHEMAS))
def test_indexed_documents_are_the_schemas_messages_plus_a_timestamp(
    topic: str, stack_run: StackRun, indexed_stack: IndexedStack
) -> None:
    check = validator(topic)
    documents = [request.document for record, request in indexed_stack.requests if record.topic == topic]
    assert documents
    for document in documents:
        message = {key: value for key, value in document.items() if key != "@timestamp"}
        assert [error.message for error in check.iter_errors(message)] == []
        assert document["@timestamp"] == document["timestamp"]


@pytest.mark.parametrize("topic", sorted(SCHEMAS))
def test_indices_got_the_templates_mappings_not_guessed_ones(
    topic: str, search_server: SearchServer, indexed_stack: IndexedStack
) -> None:
    template = template_for(topic)
    pattern = template["index_patterns"][0]
    mappings = es_request(search_server.url, "GET", f"/{pattern}/_mapping", auth=search_server.auth)
    settings = es_request(search_server.url, "GET", f"/{pattern}/_settings", auth=search_server.auth)
    assert mappings, f"no index matches {pattern}"
    expected = template["template"]["mappings"]["properties"]
    for index, body in mappings.items():
        assert body["mappings"]["properties"] == expected, index
        assert settings[index]["settings"]["index"]["number_of_replicas"] == "0"
    count = es_request(search_server.url, "GET", f"/{pattern}/_count", auth=search_server.auth)["count"]
    assert count == len(indexed_stack.documents(pattern))
