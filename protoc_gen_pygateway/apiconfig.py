"""External HTTP rules: the `grpc_api_configuration=PATH` option (a `google.api.Service` YAML file).

The file is what grpc-gateway's users already pass it (and what Google Cloud Endpoints reads)::

    type: google.api.Service
    config_version: 3
    http:
      rules:
      - selector: shop.v1.ShopService.GetBook
        get: /v1/{name=shelves/*/books/*}
        additional_bindings:
        - get: /v1/books/{name}

Resolution follows grpc-gateway v2 (internal/descriptor/grpc_api_configuration.go, registry.go,
services.go): a selector names exactly one method by its full name (surrounding spaces ignored; a
wildcard or a list is refused, as grpc-gateway refuses it); several rules may name one method; a method's
bindings are its YAML rules in file order, each followed by its additional_bindings, and then the
method's own `google.api.http` annotation, if it has one (so YAML adds bindings, it never replaces the
annotation). Stricter than grpc-gateway, and each with the file name and line: a selector naming no
method of the request, an unknown key, a value of the wrong type, a `type` other than
`google.api.Service` and a `config_version` other than 3 are errors (grpc-gateway ignores unknown keys
and unmatched selectors silently).

The YAML is read with PyYAML's composer, so every node keeps its line for the messages. PyYAML is a
plugin dependency only: generated code never needs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml
from google.api import http_pb2


class ApiConfigError(ValueError):
    """A problem in the grpc_api_configuration file; the text starts with `FILE:LINE:`."""


@dataclass(frozen=True)
class RuleSource:
    """Where one HttpRule (a rule or one of its additional_bindings) was written: file, line of the rule's
    mapping, and the line of each key it sets (for messages about that key's value)."""

    file: str
    line: int
    key_lines: dict[str, int] = field(default_factory=dict)

    def where(self, key: str | None = None) -> str:
        line = self.key_lines.get(key, self.line) if key else self.line
        return f"{self.file}:{line}"


@dataclass(frozen=True)
class ExternalRule:
    """One YAML rule for one method: its HttpRule (with additional_bindings) and where each part is."""

    selector: str
    rule: http_pb2.HttpRule
    source: RuleSource
    additional: tuple[RuleSource, ...]


#: Top-level keys of google.api.Service (protobuf names and their JSON names). Only `http` is read; the
#: others are accepted because a real service configuration carries them (title, documentation, ...).
_SERVICE_KEYS = frozenset(
    {
        "type",
        "config_version",
        "configVersion",
        "name",
        "id",
        "title",
        "producer_project_id",
        "producerProjectId",
        "apis",
        "types",
        "enums",
        "documentation",
        "backend",
        "http",
        "quota",
        "authentication",
        "context",
        "usage",
        "endpoints",
        "control",
        "logs",
        "metrics",
        "monitored_resources",
        "monitoredResources",
        "billing",
        "logging",
        "monitoring",
        "system_parameters",
        "systemParameters",
        "source_info",
        "sourceInfo",
        "publishing",
        "system_types",
        "systemTypes",
        "custom_error",
        "customError",
    }
)
_PATTERNS = ("get", "put", "post", "delete", "patch", "custom")
#: HttpRule keys (proto name -> accepted spellings: protobuf name and JSON name, as protojson reads them).
_RULE_KEYS = {
    "selector": ("selector",),
    "get": ("get",),
    "put": ("put",),
    "post": ("post",),
    "delete": ("delete",),
    "patch": ("patch",),
    "custom": ("custom",),
    "body": ("body",),
    "response_body": ("response_body", "responseBody"),
    "additional_bindings": ("additional_bindings", "additionalBindings"),
}
_SPELLINGS = {spelling: name for name, spellings in _RULE_KEYS.items() for spelling in spellings}


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


class _Reader:
    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, node: yaml.Node | None, message: str) -> ApiConfigError:
        where = f"{self.path}:{_line(node)}" if node is not None else self.path
        return ApiConfigError(f"grpc_api_configuration {where}: {message}")

    def mapping(self, node: yaml.Node, what: str) -> list[tuple[str, yaml.Node, yaml.Node]]:
        """(key, key node, value node) of a mapping, refusing non-mappings, non-string and repeated keys."""
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping, got {_kind(node)}")
        items: list[tuple[str, yaml.Node, yaml.Node]] = []
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
                raise self.fail(key_node, f"{what}: keys must be strings, got {_kind(key_node)}")
            key = str(key_node.value)
            if key in seen:
                raise self.fail(key_node, f"{what}: key {key!r} given twice")
            seen.add(key)
            items.append((key, key_node, value_node))
        return items

    def string(self, node: yaml.Node, what: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:str":
            raise self.fail(node, f"{what} must be a string, got {_kind(node)}")
        return str(node.value)

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, f"{what} must be a list, got {_kind(node)}")
        return list(node.value)

    def rule(
        self, node: yaml.Node, what: str, nested: bool
    ) -> tuple[http_pb2.HttpRule, RuleSource, list[tuple[str, yaml.Node]]]:
        """One HttpRule mapping -> (rule, its source, its additional_bindings items (what, node))."""
        rule = http_pb2.HttpRule()
        lines: dict[str, int] = {}
        additional: list[tuple[str, yaml.Node]] = []
        pattern: str | None = None
        for key, key_node, value in self.mapping(node, what):
            name = _SPELLINGS.get(key)
            if name is None or (nested and name == "selector"):
                known = ", ".join(k for k in _RULE_KEYS if not (nested and k == "selector"))
                raise self.fail(key_node, f"{what}: unknown key {key!r} (known: {known})")
            if name in lines:
                raise self.fail(key_node, f"{what}: {key!r} given twice (as {name})")
            lines[name] = _line(key_node)
            if name in _PATTERNS:
                if pattern is not None:
                    raise self.fail(key_node, f"{what}: more than one HTTP method ({pattern} and {name})")
                pattern = name
                lines["pattern"] = _line(key_node)
                if name == "custom":
                    custom = dict((k, v) for k, _, v in self.mapping(value, f"{what}: custom"))
                    unknown = sorted(set(custom) - {"kind", "path"})
                    if unknown:
                        raise self.fail(
                            value, f"{what}: custom: unknown key {unknown[0]!r} (known: kind, path)"
                        )
                    for part in ("kind", "path"):
                        if part not in custom:
                            raise self.fail(value, f"{what}: custom needs {part!r}")
                    rule.custom.kind = self.string(custom["kind"], f"{what}: custom.kind")
                    rule.custom.path = self.string(custom["path"], f"{what}: custom.path")
                else:
                    setattr(rule, name, self.string(value, f"{what}: {key}"))
            elif name == "selector":
                rule.selector = self.string(value, f"{what}: selector")
            elif name in ("body", "response_body"):
                setattr(rule, name, self.string(value, f"{what}: {key}"))
            else:  # additional_bindings
                if nested:
                    raise self.fail(key_node, f"{what} has nested additional_bindings")
                for i, item in enumerate(self.sequence(value, f"{what}: {key}")):
                    additional.append((f"{what}, additional_bindings[{i}]", item))
        if pattern is None:
            raise self.fail(
                node, f"{what}: no HTTP method and path (get, put, post, delete, patch or custom)"
            )
        return rule, RuleSource(self.path, _line(node), lines), additional


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    tag = str(node.tag).rsplit(":", 1)[-1]
    return {
        "str": "a string",
        "int": "a number",
        "float": "a number",
        "bool": "a boolean",
        "null": "null",
    }.get(tag, tag) + f" ({node.value!r})"


def load_rules(path: str, text: str | None = None) -> list[ExternalRule]:
    """Read the YAML file at `path` (or `text`) into its rules, in file order; raise ApiConfigError."""
    reader = _Reader(path)
    if text is None:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as err:
            raise ApiConfigError(f"grpc_api_configuration {path}: cannot read it: {err}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else path
        problem = " ".join(p for p in (err.context, err.problem) if p)
        raise ApiConfigError(f"grpc_api_configuration {where}: YAML syntax error: {problem}") from None
    except yaml.YAMLError as err:
        raise ApiConfigError(f"grpc_api_configuration {path}: YAML error: {err}") from None
    if root is None:
        raise ApiConfigError(
            f"grpc_api_configuration {path}: the file is empty (expected a google.api.Service)"
        )
    rules: list[ExternalRule] = []
    for key, key_node, value in reader.mapping(root, "the document"):
        if key not in _SERVICE_KEYS:
            raise reader.fail(key_node, f"unknown key {key!r} (not a google.api.Service field)")
        if key == "type":
            kind = reader.string(value, "type")
            if kind != "google.api.Service":
                raise reader.fail(value, f"type is {kind!r}, expected 'google.api.Service'")
        elif key in ("config_version", "configVersion"):
            if not (
                isinstance(value, yaml.ScalarNode)
                and value.tag == "tag:yaml.org,2002:int"
                and value.value == "3"
            ):
                raise reader.fail(value, f"config_version must be 3, got {_kind(value)}")
        elif key == "http":
            rules.extend(_http(reader, value))
    return rules


def _http(reader: _Reader, node: yaml.Node) -> list[ExternalRule]:
    rules: list[ExternalRule] = []
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
        return rules
    for key, key_node, value in reader.mapping(node, "http"):
        if key in ("fully_decode_reserved_expansion", "fullyDecodeReservedExpansion"):
            raise reader.fail(
                key_node,
                f"http.{key} is not supported (multi-segment captures keep reserved "
                "characters percent-encoded)",
            )
        if key != "rules":
            raise reader.fail(key_node, f"http: unknown key {key!r} (known: rules)")
        if isinstance(value, yaml.ScalarNode) and value.tag == "tag:yaml.org,2002:null":
            continue
        for i, item in enumerate(reader.sequence(value, "http.rules")):
            what = f"http.rules[{i}]"
            rule, source, extra = reader.rule(item, what, nested=False)
            if "selector" not in source.key_lines:
                raise reader.fail(item, f"{what}: no selector")
            selector = rule.selector.strip(" ")
            if not selector or any(c in selector for c in "*, "):
                raise ApiConfigError(
                    f"grpc_api_configuration {source.where('selector')}: {what}: selector {rule.selector!r} "
                    "must name one method (package.Service.Method) without wildcards, "
                    "as grpc-gateway requires"
                )
            additional: list[RuleSource] = []
            for what_extra, extra_node in extra:
                extra_rule, extra_source, _ = reader.rule(extra_node, what_extra, nested=True)
                rule.additional_bindings.append(extra_rule)
                additional.append(extra_source)
            rule.selector = selector
            rules.append(ExternalRule(selector, rule, source, tuple(additional)))
    return rules


__all__ = ["ApiConfigError", "ExternalRule", "RuleSource", "load_rules"]
