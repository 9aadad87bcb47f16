"""A container's ``engine:``: which engine containers (podman, docker) the declaration is for.

::

    engine:
      podman: {name: "web-*"}             # podman containers named web-*
      docker: {label: app=web}            # docker containers with that label
      label: zoned.container=web          # any engine: a label or annotation KEY=VALUE
      name: "web-*"                       # any engine: a glob on the container's name
      on_refusal: fail                    # the OCI hook when zoned cannot admit: fail | unzoned

Each of ``podman``, ``docker`` and the top-level ``name``/``label`` pair is one selector;
a container matches when every key of any one selector holds (``zoned.policy.engines``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from zoned.config.decl import EngineDecl, EngineName, EngineSelector, OnRefusal
from zoned.config.kinds import JSON, EnumKind, Field, Kind, StrKind, parse_mapping, section_schema
from zoned.config.yamlpos import TAG_NULL, Node, ScalarNode, Sink

# A glob on an engine's container name (podman and docker: [a-zA-Z0-9][a-zA-Z0-9_.-]*).
NAME_GLOB_PATTERN = r"^[^\x00-\x1f\x7f\s]{1,255}$"
# KEY=VALUE: a label or OCI annotation; the key has no '=' nor blanks.
LABEL_PATTERN = r"^[^=\x00-\x1f\x7f\s]{1,253}=[^\x00-\x1f\x7f]{0,1024}$"

SELECTOR_FIELDS: tuple[Field, ...] = (
    Field(
        "name",
        StrKind(NAME_GLOB_PATTERN, "a container name or shell glob, like web-*"),
        "The engine's container name: exact, or a shell glob (*, ?, [...]).",
    ),
    Field(
        "label",
        StrKind(LABEL_PATTERN, "KEY=VALUE, like zoned.container=web"),
        "A label (podman/docker --label) or OCI annotation (--annotation) with this value.",
    ),
)


@dataclass
class SelectorKind(Kind):
    """One engine's selector: a mapping with ``name`` and/or ``label``."""

    engine: EngineName
    expected: str = "a mapping with name and/or label"

    def parse(self, node: Node, path: str, sink: Sink) -> EngineSelector | None:
        before = len(sink.problems)
        values = parse_mapping(node, path, SELECTOR_FIELDS, sink)
        if values is None or len(sink.problems) > before:
            return None
        if not values:
            sink.found(node, path, f"an empty {self.engine} selector", "name and/or label")
            return None
        return _selector(self.engine, values)

    def schema(self) -> JSON:
        out = section_schema(SELECTOR_FIELDS)
        out["type"] = "object"
        out["minProperties"] = 1
        return out


ENGINE_FIELDS: tuple[Field, ...] = (
    Field("podman", SelectorKind("podman"), "podman containers matching name and/or label."),
    Field("docker", SelectorKind("docker"), "docker containers matching name and/or label."),
    *SELECTOR_FIELDS,
    Field(
        "on_refusal",
        EnumKind(("fail", "unzoned")),
        "What the OCI hook does when zoned cannot admit a matching container (no room):"
        " fail its start, or let it start without a zone (logged).",
        default="fail",
    ),
)


def _selector(engine: EngineName | None, values: dict[str, Any]) -> EngineSelector:
    label = values.get("label")
    pair = None if label is None else cast(tuple[str, str], tuple(label.split("=", 1)))
    return EngineSelector(engine=engine, name=values.get("name"), label=pair)


@dataclass
class EngineKind(Kind):
    """A container's ``engine:``; see the module doc."""

    expected: str = "a mapping with one or more of podman, docker, name, label"

    def parse(self, node: Node, path: str, sink: Sink) -> EngineDecl | None:
        if isinstance(node, ScalarNode) and node.tag == TAG_NULL:
            self.bad(node, path, sink)
            return None
        before = len(sink.problems)
        values = parse_mapping(node, path, ENGINE_FIELDS, sink)
        if values is None or len(sink.problems) > before:
            return None
        selectors = [values[e] for e in ("podman", "docker") if e in values]
        if "name" in values or "label" in values:
            selectors.append(_selector(None, values))
        if not selectors:
            sink.found(node, path, "no engine selector", self.expected)
            return None
        refusal = cast(OnRefusal, values.get("on_refusal", "fail"))
        return EngineDecl(selectors=tuple(selectors), on_refusal=refusal)

    def schema(self) -> JSON:
        out = section_schema(ENGINE_FIELDS)
        out["type"] = "object"
        out["anyOf"] = [{"required": [k]} for k in ("podman", "docker", "name", "label")]
        return out
