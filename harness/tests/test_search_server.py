"""A real search node: index template with explicit mapping, documents, aggregations."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from borg_harness import search_server
from borg_harness.search_server import (
    SearchServer,
    SearchServerError,
    _alive,
    _descendants,
    basic_authorization,
    ensure_search,
)


def _request(server: SearchServer, method: str, path: str, body: Any = None) -> Any:
    """One JSON request; NDJSON when ``body`` is a list (the _bulk API)."""
    if isinstance(body, list):
        data: bytes | None = "".join(json.dumps(line) + "\n" for line in body).encode()
        ctype = "application/x-ndjson"
    else:
        data = None if body is None else json.dumps(body).encode()
        ctype = "application/json"
    req = urllib.request.Request(server.url + path, data=data, method=method, headers={"Content-Type": ctype})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


@pytest.fixture(scope="module")
def server() -> Iterator[SearchServer]:
    started = time.monotonic()
    with SearchServer() as node:
        print(f"{node.flavor} {node.version} up in {time.monotonic() - started:.1f}s")
        yield node


def test_install_is_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    first = ensure_search()

    def install_again(home: Path, dist: object) -> None:
        raise AssertionError(f"installed {home} a second time")

    monkeypatch.setattr(search_server, "_install", install_again)
    assert ensure_search() == first  # the marker short-circuits the fetch


def test_node_identity(server: SearchServer) -> None:
    assert server.url == f"http://127.0.0.1:{server.port}"
    nodes = _request(server, "GET", "/_nodes/_local")["nodes"]
    (node,) = nodes.values()
    assert node["version"] == server.version
    health = _request(server, "GET", "/_cluster/health")
    assert health["status"] in ("yellow", "green")


def test_template_mapping_and_aggregations(server: SearchServer) -> None:
    template = {
        "index_patterns": ["borg-test-*"],
        "template": {
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {
                "dynamic": "strict",
                "properties": {
                    "timestamp": {"type": "date"},
                    "agent_id": {"type": "keyword"},
                    "episode_return": {"type": "float"},
                },
            },
        },
    }
    assert _request(server, "PUT", "/_index_template/borg-test", template)["acknowledged"]

    docs = [
        ("2026-01-01T00:00:10Z", "agent-a", -21.0),
        ("2026-01-01T00:00:50Z", "agent-a", -19.0),
        ("2026-01-01T00:01:30Z", "agent-b", -20.0),
    ]
    bulk: list[dict[str, Any]] = []
    for ts, agent, ret in docs:
        bulk.append({"index": {"_index": "borg-test-1"}})
        bulk.append({"timestamp": ts, "agent_id": agent, "episode_return": ret})
    result = _request(server, "POST", "/_bulk?refresh=true", bulk)
    assert not result["errors"], result

    # The template, not dynamic mapping, shaped the index.
    mapping = _request(server, "GET", "/borg-test-1/_mapping")
    props = mapping["borg-test-1"]["mappings"]["properties"]
    assert props["timestamp"]["type"] == "date"
    assert props["agent_id"]["type"] == "keyword"

    query = {
        "size": 0,
        "aggs": {
            "agents": {
                "terms": {"field": "agent_id"},
                "aggs": {"mean_return": {"avg": {"field": "episode_return"}}},
            },
            "per_minute": {"date_histogram": {"field": "timestamp", "fixed_interval": "1m"}},
        },
    }
    aggs = _request(server, "POST", "/borg-test-*/_search", query)["aggregations"]
    agents = {b["key"]: b for b in aggs["agents"]["buckets"]}
    assert {k: b["doc_count"] for k, b in agents.items()} == {"agent-a": 2, "agent-b": 1}
    assert agents["agent-a"]["mean_return"]["value"] == pytest.approx(-20.0)
    minutes = [(b["key_as_string"], b["doc_count"]) for b in aggs["per_minute"]["buckets"]]
    assert minutes == [("2026-01-01T00:00:00.000Z", 2), ("2026-01-01T00:01:00.000Z", 1)]


def test_stop_is_idempotent_and_kills_the_tree() -> None:
    node = SearchServer().start()
    assert node._proc is not None  # white-box: the launcher and the server JVM it forked
    tree = [node._proc.pid, *_descendants(node._proc.pid)]
    assert len(tree) >= 2
    node.stop()
    node.stop()
    assert not [pid for pid in tree if _alive(pid)]  # zombies count as gone
    with pytest.raises(SearchServerError, match="not running"):
        _ = node.url


def _status_as(server: SearchServer, user: str, password: str, method: str, path: str) -> tuple[int, Any]:
    """HTTP status and JSON body of one request as `user`."""
    request = urllib.request.Request(
        server.url + path, method=method, headers={"Authorization": basic_authorization(user, password)}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_with_an_elastic_password_the_node_requires_a_login_and_knows_file_users() -> None:
    node = SearchServer(
        elastic_password="harness-elastic-pw",
        users={"watcher": ("watcher-pw", ["health_only"])},
        roles={"health_only": {"cluster": ["monitor"], "indices": []}},
    )
    with node:
        assert node.auth == ("elastic", "harness-elastic-pw")
        with pytest.raises(urllib.error.HTTPError) as anonymous:
            _request(node, "GET", "/_cluster/health")
        assert anonymous.value.code == 401
        status, me = _status_as(node, *node.auth, "GET", "/_security/_authenticate")
        assert (status, me["username"]) == (200, "elastic")
        assert _status_as(node, "elastic", "nope!!", "GET", "/_security/_authenticate")[0] == 401
        status, me = _status_as(node, "watcher", "watcher-pw", "GET", "/_security/_authenticate")
        assert (status, me["roles"], me["authentication_realm"]["type"]) == (200, ["health_only"], "file")
        assert _status_as(node, "watcher", "watcher-pw", "GET", "/_cluster/health")[0] == 200
        assert _status_as(node, "watcher", "watcher-pw", "PUT", "/some-index")[0] == 403


def test_an_elastic_password_needs_elasticsearch_and_six_characters() -> None:
    with pytest.raises(SearchServerError, match="6 characters"):
        SearchServer(elastic_password="short")
    with pytest.raises(SearchServerError, match="security on"):
        SearchServer(users={"a": ("password", ["superuser"])})
    assert SearchServer().auth is None
