"""What a Kibana Lens layer asks Elasticsearch, and what it should get back.

A Lens layer (form-based data source) is a list of columns: bucketed ones (date_histogram,
terms) nest into aggregations in column order, metric ones (average, max, count,
last_value, ...) are computed in the innermost bucket, and the layer's KQL query (and a
column's own KQL filter) select documents. `layer_request` turns a layer into the search
body Kibana sends (with a fixed histogram interval instead of "auto"), `rows_from_response`
reads the answer into rows, and `expected_rows` computes the same rows from the documents
themselves, in Python, for comparison.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

Row = dict[str, Any]
RowKey = tuple[Any, ...]

METRIC_AGGREGATIONS = {"average": "avg", "max": "max", "min": "min", "sum": "sum", "unique_count": "cardinality"}
SUPPORTED_OPERATIONS = {"date_histogram", "terms", "count", "last_value", *METRIC_AGGREGATIONS}


class UnsupportedLensError(ValueError):
    """A Lens feature this translator does not know (so a test cannot silently skip it)."""


def kql_clauses(query: str) -> list[tuple[str, str | None]]:
    """`field : "value" and other: *` as [(field, value), (other, None)]; None means exists."""
    if not query.strip():
        return []
    clauses = []
    for part in re.split(r"\s+and\s+", query.strip(), flags=re.IGNORECASE):
        if match := re.fullmatch(r'([\w@.]+)\s*:\s*"([^"]*)"', part):
            clauses.append((match.group(1), match.group(2)))
        elif match := re.fullmatch(r"([\w@.]+)\s*:\s*\*", part):
            clauses.append((match.group(1), None))
        else:
            raise UnsupportedLensError(f'KQL clause {part!r} is not of the form field : "value" or field : *')
    return clauses


def kql_fields(query: str) -> set[str]:
    """The fields a KQL query of the supported form names."""
    return {name for name, _ in kql_clauses(query)}


def kql_to_query(query: str) -> dict[str, Any]:
    """The Elasticsearch query of a KQL query of the supported form."""
    filters = [
        {"exists": {"field": name}} if value is None else {"term": {name: value}} for name, value in kql_clauses(query)
    ]
    return {"bool": {"filter": filters}}


def kql_matches(document: Mapping[str, Any], query: str) -> bool:
    """Whether a document satisfies a KQL query of the supported form."""
    return all(
        document.get(name) is not None if value is None else document.get(name) == value
        for name, value in kql_clauses(query)
    )


def epoch_millis(timestamp: str) -> int:
    """An ISO 8601 timestamp as milliseconds since the epoch."""
    return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000)


def _split_columns(layer: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    columns = layer["columns"]
    for column_id in layer["columnOrder"]:
        operation = columns[column_id]["operationType"]
        if operation not in SUPPORTED_OPERATIONS:
            raise UnsupportedLensError(f"column {column_id}: operation {operation}")
    bucketed = [cid for cid in layer["columnOrder"] if columns[cid]["isBucketed"]]
    metrics = [cid for cid in layer["columnOrder"] if not columns[cid]["isBucketed"]]
    return bucketed, metrics


def _metric_aggregation(column: Mapping[str, Any]) -> dict[str, Any] | None:
    operation, source = column["operationType"], column.get("sourceField")
    if operation == "count":
        inner = None
    elif operation == "last_value":
        sort_field = column["params"]["sortField"]
        inner = {
            "filter": {"exists": {"field": source}},
            "aggs": {
                "hit": {
                    "top_hits": {
                        "size": 1,
                        "sort": [{sort_field: {"order": "desc"}}],
                        "_source": {"includes": [source]},
                    }
                }
            },
        }
    else:
        inner = {METRIC_AGGREGATIONS[operation]: {"field": source}}
    if column.get("filter"):
        return {"filter": kql_to_query(column["filter"]["query"]), "aggs": {"value": inner} if inner else {}}
    return inner


def layer_request(layer: Mapping[str, Any], query: str, interval_ms: int) -> dict[str, Any]:
    """The search body of a layer: its query, its buckets nested in order, its metrics innermost."""
    bucketed, metrics = _split_columns(layer)
    columns = layer["columns"]
    aggregations: dict[str, Any] = {}
    for column_id in metrics:
        aggregation = _metric_aggregation(columns[column_id])
        if aggregation is not None:
            aggregations[column_id] = aggregation
    for column_id in reversed(bucketed):
        column = columns[column_id]
        if column["operationType"] == "date_histogram":
            bucket: dict[str, Any] = {
                "date_histogram": {
                    "field": column["sourceField"],
                    "fixed_interval": f"{interval_ms}ms",
                    "min_doc_count": 1,
                }
            }
        else:
            bucket = {
                "terms": {"field": column["sourceField"], "size": column["params"]["size"], "order": {"_key": "asc"}}
            }
        if aggregations:
            bucket["aggs"] = aggregations
        aggregations = {column_id: bucket}
    return {"size": 0, "track_total_hits": True, "query": kql_to_query(query), "aggs": aggregations}


def _metric_value(column: Mapping[str, Any], bucket: Mapping[str, Any], column_id: str) -> Any:
    operation = column["operationType"]
    if operation == "count" and not column.get("filter"):
        return bucket["doc_count"]
    node = bucket[column_id]
    if column.get("filter"):
        if operation == "count":
            return node["doc_count"]
        node = node["value"]
    if operation == "last_value":
        hits = node["hit"]["hits"]["hits"]
        return hits[0]["_source"].get(column["sourceField"]) if hits else None
    return node["value"]


def rows_from_response(layer: Mapping[str, Any], response: Mapping[str, Any]) -> dict[RowKey, Row]:
    """The layer's rows, keyed by their bucket values (in column order)."""
    bucketed, metrics = _split_columns(layer)
    columns = layer["columns"]
    rows: dict[RowKey, Row] = {}

    def walk(node: Mapping[str, Any], depth: int, key: RowKey) -> None:
        if depth == len(bucketed):
            rows[key] = {cid: _metric_value(columns[cid], node, cid) for cid in metrics}
            return
        for bucket in node[bucketed[depth]]["buckets"]:
            walk(bucket, depth + 1, (*key, bucket["key"]))

    top = {"doc_count": response["hits"]["total"]["value"], **response.get("aggregations", {})}
    walk(top, 0, ())
    return rows


def _expected_metric(column: Mapping[str, Any], documents: list[Mapping[str, Any]]) -> Any:
    if column.get("filter"):
        documents = [doc for doc in documents if kql_matches(doc, column["filter"]["query"])]
    operation, source = str(column["operationType"]), str(column.get("sourceField"))
    if operation == "count":
        return len(documents)
    if operation == "last_value":
        candidates = [doc for doc in documents if doc.get(source) is not None]
        sort_field = column["params"]["sortField"]
        return max(candidates, key=lambda doc: epoch_millis(doc[sort_field]))[source] if candidates else None
    values = [doc[source] for doc in documents if doc.get(source) is not None]
    if operation == "unique_count":
        return len(set(values))
    if not values:
        return 0.0 if operation == "sum" else None
    if operation == "average":
        return sum(values) / len(values)
    if operation == "max":
        return max(values)
    if operation == "min":
        return min(values)
    return sum(values)


def expected_rows(
    layer: Mapping[str, Any], query: str, documents: Iterable[Mapping[str, Any]], interval_ms: int
) -> dict[RowKey, Row]:
    """The rows the layer should show for these documents, computed without Elasticsearch."""
    bucketed, metrics = _split_columns(layer)
    columns = layer["columns"]
    groups: dict[RowKey, list[Mapping[str, Any]]] = defaultdict(list)
    for document in documents:
        if not kql_matches(document, query):
            continue
        key: list[Any] = []
        for column_id in bucketed:
            column = columns[column_id]
            value = document.get(column["sourceField"])
            if value is None:
                break
            if column["operationType"] == "date_histogram":
                value = epoch_millis(value) // interval_ms * interval_ms
            key.append(value)
        else:
            groups[tuple(key)].append(document)
    if not bucketed:
        groups.setdefault((), [])
    return {key: {cid: _expected_metric(columns[cid], docs) for cid in metrics} for key, docs in groups.items()}
