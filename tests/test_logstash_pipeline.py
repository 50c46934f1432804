"""logstash/: the pipeline reads the topics the producers write, decodes JSON, keeps the topic,
and routes each topic to the index family its template and data view expect."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from borg_game.settings import Settings
from borg_monitor.settings import MonitorSettings

from conftest import (
    REPO_ROOT,
    load_saved_objects,
    load_templates,
)
from logstash_config import (
    ConfigError,
    Pipeline,
    PipelineEmulator,
    Plugin,
    environment_references,
    parse_pipeline,
)

PRODUCER_TOPICS = {
    str(Settings.model_fields["training_log_topic"].default),
    str(MonitorSettings.model_fields["monitoring_topic"].default),
}


def kafka_input(pipeline: Pipeline) -> Plugin:
    (plugin,) = [plugin for _, plugin in pipeline.plugins("input")]
    assert plugin.name == "kafka"
    return plugin


def outputs_by_topic(pipeline: Pipeline) -> dict[str, Plugin]:
    routes: dict[str, Plugin] = {}
    for conditions, plugin in pipeline.plugins("output"):
        (condition,) = conditions
        assert condition is not None, "every output is behind a topic condition"
        assert (condition.field_path, condition.operator) == (("@metadata", "kafka", "topic"), "==")
        assert condition.value not in routes
        routes[condition.value] = plugin
    return routes


def index_family(plugin: Plugin) -> str:
    """`borg-x-%{+YYYY.MM.dd}` -> `borg-x-`."""
    index = str(plugin.setting("index"))
    assert index.endswith("-%{+YYYY.MM.dd}"), "daily indices named <family>-<date>"
    return index.removesuffix("%{+YYYY.MM.dd}")


def test_it_reads_exactly_the_topics_the_game_and_the_monitor_write(pipeline: Pipeline) -> None:
    assert set(kafka_input(pipeline).setting("topics")) == PRODUCER_TOPICS


def test_the_topics_made_by_compose_are_the_ones_it_reads(pipeline: Pipeline, compose_model: dict[str, Any]) -> None:
    created = compose_model["services"]["kafka-topics"]["environment"]["TOPICS"].split()
    assert set(created) == set(kafka_input(pipeline).setting("topics"))


def test_messages_are_decoded_as_json_and_keep_their_topic(pipeline: Pipeline) -> None:
    kafka = kafka_input(pipeline)
    assert kafka.setting("codec") == "json"
    assert kafka.setting("decorate_events") in ("basic", "extended")
    assert kafka.setting("auto_offset_reset") == "earliest"
    assert kafka.setting("group_id"), "a fixed consumer group: a restarted Logstash continues where it stopped"


def test_the_event_time_is_the_messages_timestamp(pipeline: Pipeline) -> None:
    (date,) = [plugin for _, plugin in pipeline.plugins("filter") if plugin.name == "date"]
    assert date.setting("match") == ["timestamp", "ISO8601"]
    assert date.setting("target") == "@timestamp"


def test_each_topic_goes_to_its_templates_index_family_and_data_view(pipeline: Pipeline) -> None:
    routes = outputs_by_topic(pipeline)
    assert set(routes) == PRODUCER_TOPICS
    families = {topic: index_family(plugin) for topic, plugin in routes.items()}
    templates = load_templates()
    by_schema = {template["_meta"]["schema"]: template for template in templates.values()}
    for topic, family in families.items():
        template = by_schema[f"schemas/{topic}.schema.json"]
        assert template["index_patterns"] == [f"{family}*"]
    data_views = {obj["attributes"]["title"] for obj in load_saved_objects() if obj["type"] == "index-pattern"}
    assert data_views == {f"{family}*" for family in families.values()}


def test_outputs_write_plain_indices_shaped_by_our_templates_with_idempotent_ids(pipeline: Pipeline) -> None:
    for plugin in outputs_by_topic(pipeline).values():
        assert plugin.name == "elasticsearch"
        assert plugin.setting("data_stream") == "false"
        assert plugin.setting("manage_template") == "false", "templates come from elasticsearch-setup"
        assert plugin.setting("ilm_enabled") == "false"
        assert plugin.setting("document_id") == (
            "%{[@metadata][kafka][partition]}-%{[@metadata][kafka][offset]}-%{[@metadata][kafka][timestamp]}"
        )


def test_every_environment_variable_it_uses_is_set_by_compose(
    pipeline: Pipeline, compose_model: dict[str, Any]
) -> None:
    used: set[str] = set()
    for section in ("input", "filter", "output"):
        for _, plugin in pipeline.plugins(section):
            for value in plugin.settings.values():
                used |= environment_references(value)
    environment = compose_model["services"]["logstash"]["environment"]
    assert used and used <= set(environment)
    assert environment["BORG_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert environment["BORG_ELASTICSEARCH_URL"] == "http://elasticsearch:9200"


def test_pipelines_yml_runs_the_mounted_pipeline(compose_model: dict[str, Any]) -> None:
    pipelines = yaml.safe_load((REPO_ROOT / "logstash" / "config" / "pipelines.yml").read_text())
    (entry,) = pipelines
    assert entry["pipeline.id"] == "borg"
    mounts = {
        volume["target"]: volume["source"]
        for volume in compose_model["services"]["logstash"]["volumes"]
        if volume["type"] == "bind"
    }
    container_path = entry["path.config"]
    directory, _, name = container_path.rpartition("/")
    assert directory in mounts, f"{container_path} is not in a mounted folder"
    assert mounts[directory].endswith("logstash/pipeline")
    assert (REPO_ROOT / "logstash" / "pipeline" / name).is_file()
    settings = yaml.safe_load((REPO_ROOT / "logstash" / "config" / "logstash.yml").read_text())
    assert settings["api.http.port"] == 9600, "the healthcheck asks port 9600"


def test_the_healthcheck_asks_for_the_pipeline_by_its_id(compose_model: dict[str, Any]) -> None:
    test = " ".join(compose_model["services"]["logstash"]["healthcheck"]["test"])
    assert "localhost:9600/_node/pipelines/borg" in test


def test_the_parser_and_emulator_refuse_what_they_do_not_know() -> None:
    with pytest.raises(ConfigError):
        parse_pipeline("output { if [type] =~ /x/ { stdout {} } }")
    unknown_filter = parse_pipeline(
        'input { kafka { topics => ["t"] codec => json } } filter { grok { match => { "m" => "x" } } }'
    )
    with pytest.raises(ConfigError):
        PipelineEmulator(unknown_filter).process("t", 0, 0, 0, b'{"timestamp": "2026-01-01T00:00:00Z"}')
