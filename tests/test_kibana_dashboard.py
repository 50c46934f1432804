"""kibana/dashboard.ndjson: well-formed saved objects whose references resolve, whose panels use
mapped fields, and whose every aggregation, run on the real messages in a real Elasticsearch,
returns what those messages say."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from borg_harness.search_server import SearchServer

from conftest import REPO_ROOT, IndexedStack, load_saved_objects, load_templates
from lens_queries import (
    SUPPORTED_OPERATIONS,
    UnsupportedLensError,
    expected_rows,
    kql_fields,
    kql_to_query,
    layer_request,
    rows_from_response,
)
from search_client import es_request

DASHBOARD_ID = "borg-dqn"
DATA_VIEW_IDS = {"borg-training-log", "borg-memory-monitoring"}
GRID_COLUMNS = 48
# Buckets of the date histograms when run on the test's few seconds of messages
# (Kibana's "auto" interval depends on the time range shown).
TEST_INTERVAL_MS = 500
NUMERIC = {"integer", "long", "double", "float"}
# (operation kind, mapped type) pairs Lens allows.
FIELD_TYPES_BY_OPERATION = {
    "date_histogram": {"date"},
    "terms": {"keyword"},
    "average": NUMERIC,
    "max": NUMERIC,
    "min": NUMERIC,
    "sum": NUMERIC,
    "last_value": NUMERIC | {"keyword", "date"},
    "unique_count": NUMERIC | {"keyword"},
}

OBJECTS = load_saved_objects()
BY_ID = {(obj["type"], obj["id"]): obj for obj in OBJECTS}
DASHBOARD = BY_ID[("dashboard", DASHBOARD_ID)]
PANELS: list[dict[str, Any]] = json.loads(DASHBOARD["attributes"]["panelsJSON"])


def data_view_title(data_view_id: str) -> str:
    title: str = BY_ID[("index-pattern", data_view_id)]["attributes"]["title"]
    return title


def mapping_for(data_view_id: str) -> dict[str, str]:
    """Field -> mapped type of the template whose pattern is the data view's title."""
    title = data_view_title(data_view_id)
    (template,) = [t for t in load_templates().values() if t["index_patterns"] == [title]]
    return {name: spec["type"] for name, spec in template["template"]["mappings"]["properties"].items()}


def lens_layers(panel: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], str, str]]:
    """(layer id, layer, data view id, KQL query) of each layer of a Lens panel."""
    attributes = panel["embeddableConfig"]["attributes"]
    state = attributes["state"]
    references = {ref["name"]: ref for ref in attributes["references"]}
    for layer_id, layer in state["datasourceStates"]["formBased"]["layers"].items():
        reference = references[f"indexpattern-datasource-layer-{layer_id}"]
        assert reference["type"] == "index-pattern"
        yield layer_id, layer, reference["id"], state["query"]["query"]


def test_every_line_is_one_saved_object_with_a_fixed_unique_id() -> None:
    lines = (REPO_ROOT / "kibana" / "dashboard.ndjson").read_text().splitlines()
    assert len(lines) == len(OBJECTS) and all(lines)
    assert len(BY_ID) == len(OBJECTS), "duplicate (type, id)"
    assert {obj["type"] for obj in OBJECTS} == {"index-pattern", "dashboard"}
    assert {obj["id"] for obj in OBJECTS if obj["type"] == "index-pattern"} == DATA_VIEW_IDS
    for obj in OBJECTS:
        # Without them Kibana would run every migration since 7.x over the object.
        assert obj["coreMigrationVersion"] and obj["typeMigrationVersion"], obj["id"]
        assert obj["managed"] is False


def test_data_views_are_the_index_templates_patterns_with_a_date_time_field() -> None:
    patterns = {pattern for template in load_templates().values() for pattern in template["index_patterns"]}
    titles = {data_view_title(view) for view in DATA_VIEW_IDS}
    assert titles == patterns
    for view in DATA_VIEW_IDS:
        time_field = BY_ID[("index-pattern", view)]["attributes"]["timeFieldName"]
        assert mapping_for(view)[time_field] == "date"
        formats = json.loads(BY_ID[("index-pattern", view)]["attributes"]["fieldFormatMap"])
        assert set(formats) <= set(mapping_for(view))


def test_every_reference_resolves() -> None:
    for obj in OBJECTS:
        for reference in obj["references"]:
            assert (reference["type"], reference["id"]) in BY_ID, f"{obj['id']}: {reference}"
    # Each panel's data-view reference is also on the dashboard, prefixed with the panel's index.
    dashboard_references = {(ref["name"], ref["id"]) for ref in DASHBOARD["references"]}
    for panel in PANELS:
        for ref in panel["embeddableConfig"]["attributes"]["references"]:
            assert (f"{panel['panelIndex']}:{ref['name']}", ref["id"]) in dashboard_references
            assert ("index-pattern", ref["id"]) in BY_ID


def test_panels_tile_the_grid_without_overlapping() -> None:
    indices = [panel["panelIndex"] for panel in PANELS]
    assert len(set(indices)) == len(indices)
    cells: set[tuple[int, int]] = set()
    for panel in PANELS:
        grid = panel["gridData"]
        assert grid["i"] == panel["panelIndex"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= GRID_COLUMNS
        mine = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & mine, f"{panel['panelIndex']} overlaps another panel"
        cells |= mine


@pytest.mark.parametrize("panel", PANELS, ids=[panel["panelIndex"] for panel in PANELS])
def test_lens_panel_is_consistent_and_uses_only_mapped_fields(panel: dict[str, Any]) -> None:
    assert panel["type"] == "lens"
    attributes = panel["embeddableConfig"]["attributes"]
    assert attributes["type"] == "lens" and attributes["title"] == panel["title"]
    visualization = attributes["state"]["visualization"]
    for layer_id, layer, data_view, query in lens_layers(panel):
        columns = layer["columns"]
        assert list(columns) == layer["columnOrder"]
        mapping = mapping_for(data_view)
        assert kql_fields(query) <= set(mapping), f"query {query!r} names unmapped fields"
        for column_id, column in columns.items():
            operation = column["operationType"]
            assert operation in SUPPORTED_OPERATIONS, f"{column_id}: {operation}"
            if operation != "count":
                allowed = FIELD_TYPES_BY_OPERATION[operation]
                assert mapping.get(column["sourceField"]) in allowed, f"{column_id}: {column['sourceField']}"
            if column.get("filter"):
                assert kql_fields(column["filter"]["query"]) <= set(mapping)
        metrics = {cid for cid, column in columns.items() if not column["isBucketed"]}
        buckets = {cid for cid, column in columns.items() if column["isBucketed"]}
        if attributes["visualizationType"] == "lnsXY":
            (vis_layer,) = [vis for vis in visualization["layers"] if vis["layerId"] == layer_id]
            assert vis_layer["xAccessor"] in buckets
            assert columns[vis_layer["xAccessor"]]["operationType"] == "date_histogram"
            assert set(vis_layer["accessors"]) == metrics
            assert {vis_layer.get("splitAccessor"), vis_layer["xAccessor"]} - {None} == buckets
        else:
            assert attributes["visualizationType"] == "lnsMetric"
            assert visualization["layerId"] == layer_id
            assert {visualization["metricAccessor"]} == metrics and not buckets


def test_dashboard_shows_every_required_measure() -> None:
    used: set[tuple[str, str, str | None]] = set()
    for panel in PANELS:
        for _, layer, data_view, _ in lens_layers(panel):
            split = {c["sourceField"] for c in layer["columns"].values() if c["operationType"] == "terms"}
            for column in layer["columns"].values():
                if not column["isBucketed"]:
                    used.add((data_view, column["sourceField"], next(iter(split), None)))
    training, memory = "borg-training-log", "borg-memory-monitoring"
    required = {
        (training, "episode_return", "agent_id"),  # episode return per agent over time
        (training, "episode_return", None),  # hive mean return
        (training, "eval_return_mean", "agent_id"),
        (training, "loss", "agent_id"),
        (training, "epsilon", "agent_id"),
        (training, "steps_per_second", "agent_id"),
        (training, "dropped_transitions", "agent_id"),  # the replay memory's trouble counters
        (training, "push_errors", "agent_id"),
        (training, "corrupt_entries", "agent_id"),
        (memory, "transition_count", None),
        (memory, "replay_bytes", None),
        (memory, "insert_rate", None),
    }
    assert required <= used


def test_readme_section_links_the_dashboard_by_its_fixed_id() -> None:
    text = (REPO_ROOT / "docs" / "full-stack.md").read_text()
    assert f"http://localhost:5601/app/dashboards#/view/{DASHBOARD_ID}" in text


@pytest.mark.parametrize("panel", PANELS, ids=[panel["panelIndex"] for panel in PANELS])
def test_panel_aggregations_return_what_the_messages_say(
    panel: dict[str, Any], search_server: SearchServer, indexed_stack: IndexedStack
) -> None:
    for _, layer, data_view, query in lens_layers(panel):
        title = data_view_title(data_view)
        documents = indexed_stack.documents(title)
        expected = expected_rows(layer, query, documents, TEST_INTERVAL_MS)
        assert expected, f"the test run produced nothing for {panel['panelIndex']}"
        assert any(value is not None for row in expected.values() for value in row.values())
        response = es_request(
            search_server.url,
            "POST",
            f"/{title}/_search",
            layer_request(layer, query, TEST_INTERVAL_MS),
            auth=search_server.auth,
        )
        actual = rows_from_response(layer, response)
        assert actual.keys() == expected.keys()
        for key, row in expected.items():
            for column_id, value in row.items():
                if isinstance(value, float):
                    assert actual[key][column_id] == pytest.approx(value, rel=1e-9), (key, column_id)
                else:
                    assert actual[key][column_id] == value, (key, column_id)


def test_translator_refuses_what_it_does_not_know() -> None:
    with pytest.raises(UnsupportedLensError):
        kql_to_query("episode_return > 5")
    layer = {"columns": {"m": {"operationType": "percentile", "isBucketed": False}}, "columnOrder": ["m"]}
    with pytest.raises(UnsupportedLensError):
        layer_request(layer, "", TEST_INTERVAL_MS)
