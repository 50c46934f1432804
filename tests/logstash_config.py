"""A parser for the subset of the Logstash config language that logstash/pipeline/borg.conf uses,
and an emulator that runs a parsed pipeline on Kafka messages the way Logstash would.

Logstash itself cannot run on the test machines. Parsing its pipeline lets the tests check
what it says (topics, codec, routing, index names) against the producers, the index
templates and the dashboard, and emulating it lets real messages reach a real
Elasticsearch under exactly the index names and document ids the pipeline computes. The
emulator knows only the plugins and options borg.conf uses and refuses anything else, so a
change to the pipeline cannot slip past the tests unemulated.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Value = str | list["Value"] | dict[str, "Value"]

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<symbol>=>|==|!=|=~|!~|[{}\[\],()])
  | (?P<word>[A-Za-z0-9_@.+\-:/*]+)
    """,
    re.VERBOSE,
)


class ConfigError(ValueError):
    """The text is not in the supported subset of the Logstash config language."""


@dataclass(frozen=True)
class Condition:
    """`[a][b] == "value"`: a field reference compared with a string."""

    field_path: tuple[str, ...]
    operator: str
    value: str


@dataclass
class Plugin:
    """One plugin block, e.g. `kafka { topics => [...] }`."""

    name: str
    settings: dict[str, Value]

    def setting(self, name: str) -> Value:
        """The value of a setting; KeyError names the plugin."""
        if name not in self.settings:
            raise KeyError(f"plugin {self.name} has no setting {name}")
        return self.settings[name]


@dataclass
class Branch:
    """One arm of an if / else if / else; `condition` None is the else."""

    condition: Condition | None
    body: list[Node]


@dataclass
class Conditional:
    """if ... else if ... else."""

    branches: list[Branch]


Node = Plugin | Conditional


@dataclass
class Pipeline:
    """The three sections of a pipeline config."""

    sections: dict[str, list[Node]] = field(default_factory=dict)

    def plugins(self, section: str) -> Iterator[tuple[tuple[Condition | None, ...], Plugin]]:
        """Every plugin of a section with the conditions that lead to it (outermost first)."""

        def walk(
            nodes: list[Node], path: tuple[Condition | None, ...]
        ) -> Iterator[tuple[tuple[Condition | None, ...], Plugin]]:
            for node in nodes:
                if isinstance(node, Plugin):
                    yield path, node
                else:
                    for branch in node.branches:
                        yield from walk(branch.body, (*path, branch.condition))

        yield from walk(self.sections.get(section, []), ())


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            line = text.count("\n", 0, position) + 1
            raise ConfigError(f"line {line}: unexpected {text[position : position + 20]!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            tokens.append((kind, match.group()))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.index = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise ConfigError(f"unexpected end of config (expected {expected or 'more'})")
        if expected is not None and token[1] != expected:
            raise ConfigError(f"expected {expected!r}, found {token[1]!r} (token {self.index})")
        self.index += 1
        return token

    def pipeline(self) -> Pipeline:
        pipeline = Pipeline()
        while self.peek() is not None:
            kind, name = self.take()
            if kind != "word" or name not in ("input", "filter", "output"):
                raise ConfigError(f"expected a section (input, filter, output), found {name!r}")
            self.take("{")
            pipeline.sections.setdefault(name, []).extend(self.block())
            self.take("}")
        return pipeline

    def block(self) -> list[Node]:
        nodes: list[Node] = []
        while (token := self.peek()) is not None and token[1] != "}":
            if token[1] == "if":
                nodes.append(self.conditional())
            else:
                kind, name = self.take()
                if kind != "word":
                    raise ConfigError(f"expected a plugin name, found {name!r}")
                self.take("{")
                nodes.append(Plugin(name, self.settings()))
                self.take("}")
        return nodes

    def conditional(self) -> Conditional:
        self.take("if")
        branches = [Branch(self.condition(), self.braced_block())]
        while (token := self.peek()) is not None and token[1] == "else":
            self.take("else")
            next_token = self.peek()
            if next_token is not None and next_token[1] == "if":
                self.take("if")
                branches.append(Branch(self.condition(), self.braced_block()))
            else:
                branches.append(Branch(None, self.braced_block()))
                break
        return Conditional(branches)

    def braced_block(self) -> list[Node]:
        self.take("{")
        body = self.block()
        self.take("}")
        return body

    def condition(self) -> Condition:
        path = []
        while (token := self.peek()) is not None and token[1] == "[":
            self.take("[")
            path.append(self.take()[1])
            self.take("]")
        if not path:
            raise ConfigError("a condition must start with a field reference like [a][b]")
        operator = self.take()[1]
        if operator not in ("==", "!="):
            raise ConfigError(f"unsupported condition operator {operator!r}")
        kind, literal = self.take()
        if kind != "string":
            raise ConfigError(f"conditions must compare with a string, found {literal!r}")
        return Condition(tuple(path), operator, _unquote(literal))

    def settings(self) -> dict[str, Value]:
        settings: dict[str, Value] = {}
        while (token := self.peek()) is not None and token[1] != "}":
            kind, name = self.take()
            if kind not in ("word", "string"):
                raise ConfigError(f"expected a setting name, found {name!r}")
            key = _unquote(name) if kind == "string" else name
            self.take("=>")
            if key in settings:
                raise ConfigError(f"setting {key} given twice")
            settings[key] = self.value()
        return settings

    def value(self) -> Value:
        kind, text = self.take()
        if kind == "string":
            return _unquote(text)
        if kind == "word":
            return text
        if text == "[":
            items: list[Value] = []
            while (token := self.peek()) is not None and token[1] != "]":
                items.append(self.value())
                if (token := self.peek()) is not None and token[1] == ",":
                    self.take(",")
            self.take("]")
            return items
        if text == "{":
            mapping = self.settings()
            self.take("}")
            return mapping
        raise ConfigError(f"unexpected {text!r} where a value belongs")


def _unquote(literal: str) -> str:
    return re.sub(r"\\(.)", r"\1", literal[1:-1])


def parse_pipeline(text: str) -> Pipeline:
    """Parse a pipeline config; ConfigError says where it leaves the supported subset."""
    return _Parser(text).pipeline()


def environment_references(value: Value) -> set[str]:
    """Names of the `${VAR}` / `${VAR:default}` references in a value, without defaults."""
    if isinstance(value, str):
        return {match.group(1) for match in re.finditer(r"\$\{(\w+)(?::[^}]*)?\}", value) if ":" not in match.group(0)}
    items = value.values() if isinstance(value, dict) else value
    return set().union(*(environment_references(item) for item in items)) if items else set()


def substitute_environment(value: str, environ: Mapping[str, str]) -> str:
    """Logstash's `${VAR}` / `${VAR:default}` substitution."""

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is None:
            raise KeyError(f"environment variable {name} is not set")
        return default

    return re.sub(r"\$\{(\w+)(?::([^}]*))?\}", replace, value)


# --------------------------------------------------------------------------- emulation

_JODA_TO_STRFTIME = {"YYYY": "%Y", "yyyy": "%Y", "MM": "%m", "dd": "%d", "HH": "%H"}


def field_path(reference: str) -> tuple[str, ...]:
    """`[a][b]` or `a` as a path."""
    parts = re.findall(r"\[([^\]]+)\]", reference)
    return tuple(parts) if parts else (reference,)


def _get(event: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = event
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _remove(event: dict[str, Any], path: tuple[str, ...]) -> None:
    parent: Any = event
    for part in path[:-1]:
        parent = parent.get(part) if isinstance(parent, dict) else None
    if isinstance(parent, dict):
        parent.pop(path[-1], None)


def sprintf(template: str, event: Mapping[str, Any]) -> str:
    """Logstash's `%{[field]}` and `%{+<joda date of @timestamp>}` formatting."""

    def replace(match: re.Match[str]) -> str:
        inner = match.group(1)
        if inner.startswith("+"):
            timestamp = datetime.fromisoformat(str(event["@timestamp"]).replace("Z", "+00:00")).astimezone(UTC)
            pattern = inner[1:]
            for joda, strftime in _JODA_TO_STRFTIME.items():
                pattern = pattern.replace(joda, strftime)
            return timestamp.strftime(pattern)
        value = _get(event, field_path(inner))
        if value is None:
            raise KeyError(f"{inner} is not in the event")
        return str(value)

    return re.sub(r"%\{([^}]+)\}", replace, template)


@dataclass(frozen=True)
class IndexRequest:
    """What the pipeline's elasticsearch output sends for one event, and as whom
    (`credentials`: its user and password settings, environment substituted)."""

    index: str
    document_id: str | None
    document: dict[str, Any]
    credentials: tuple[str, str] | None = None


class PipelineEmulator:
    """Runs a parsed borg.conf on Kafka records as Logstash would."""

    def __init__(self, pipeline: Pipeline, environ: Mapping[str, str] | None = None) -> None:
        self.pipeline = pipeline
        self.environ = dict(os.environ if environ is None else environ)
        inputs = [plugin for _, plugin in pipeline.plugins("input")]
        if [plugin.name for plugin in inputs] != ["kafka"]:
            raise ConfigError(f"the emulator knows one kafka input, the pipeline has {[p.name for p in inputs]}")
        self.kafka = inputs[0]
        if self.kafka.settings.get("codec") != "json":
            raise ConfigError("the emulator knows only codec => json")

    def process(self, topic: str, partition: int, offset: int, timestamp: int, value: bytes) -> list[IndexRequest]:
        """The index requests Logstash would make for one Kafka record (`timestamp`: its
        Kafka timestamp, milliseconds since the epoch)."""
        event: dict[str, Any] = json.loads(value)
        # The kafka input stamps @timestamp with the time of reading; the date filter replaces it.
        event["@timestamp"] = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        event["@version"] = "1"
        event.setdefault("event", {})["original"] = value.decode()
        if self.kafka.settings.get("decorate_events") in ("basic", "extended", "true"):
            event["@metadata"] = {
                "kafka": {"topic": topic, "partition": partition, "offset": offset, "timestamp": timestamp}
            }
        for _, plugin in self.pipeline.plugins("filter"):
            self._filter(plugin, event)
        if not event.get("event"):
            event.pop("event", None)
        requests = []
        for conditions, plugin in self.pipeline.plugins("output"):
            if all(condition is None or self._holds(condition, event) for condition in conditions):
                requests.append(self._output(plugin, event))
        return requests

    def _holds(self, condition: Condition, event: Mapping[str, Any]) -> bool:
        equal = _get(event, condition.field_path) == condition.value
        return equal if condition.operator == "==" else not equal

    def _filter(self, plugin: Plugin, event: dict[str, Any]) -> None:
        known = {"date": {"id", "match", "target"}, "mutate": {"id", "remove_field"}}
        if plugin.name not in known or not set(plugin.settings) <= known[plugin.name]:
            raise ConfigError(f"the emulator does not know filter {plugin.name} {sorted(plugin.settings)}")
        if plugin.name == "date":
            match = plugin.setting("match")
            assert isinstance(match, list) and len(match) == 2 and match[1] == "ISO8601", match
            source = _get(event, field_path(str(match[0])))
            target = str(plugin.settings.get("target", "@timestamp"))
            parsed = datetime.fromisoformat(str(source).replace("Z", "+00:00")).astimezone(UTC)
            event[target] = parsed.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        else:
            fields = plugin.setting("remove_field")
            for reference in fields if isinstance(fields, list) else [fields]:
                _remove(event, field_path(str(reference)))

    def _output(self, plugin: Plugin, event: Mapping[str, Any]) -> IndexRequest:
        if plugin.name != "elasticsearch":
            raise ConfigError(f"the emulator does not know output {plugin.name}")
        index = sprintf(str(plugin.setting("index")), event)
        document_id = plugin.settings.get("document_id")
        document = {key: value for key, value in event.items() if key != "@metadata"}
        user, password = plugin.settings.get("user"), plugin.settings.get("password")
        credentials = None
        if user is not None or password is not None:
            credentials = (
                substitute_environment(str(user or ""), self.environ),
                substitute_environment(str(password or ""), self.environ),
            )
        return IndexRequest(index, sprintf(str(document_id), event) if document_id else None, document, credentials)
