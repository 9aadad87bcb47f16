"""The one table of configuration fields: how each is read from YAML and shown in JSON Schema.

Every key zoned accepts is a ``Field`` with a ``Kind``. A kind both parses a composed YAML
node (recording a problem in the ``Sink`` when it cannot) and renders its JSON Schema
fragment, so ``zoned.config`` and ``zoned.schema`` read the same table and cannot drift.
Defaults shown in the schema come from the dataclasses in ``zoned.decl``.
"""

from __future__ import annotations

import difflib
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, fields
from typing import Any

from zoned.decl import Amount, ContainerDecl, HostDecl, PolicyDecl
from zoned.sizes import parse_size
from zoned.yamlpos import (
    TAG_BOOL,
    TAG_FLOAT,
    TAG_INT,
    TAG_NULL,
    TAG_STR,
    MappingNode,
    Node,
    ScalarNode,
    SequenceNode,
    Sink,
    describe,
    scalar_value,
)

JSON = dict[str, Any]

# A container name becomes a cgroup directory name.
NAME_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$"
NAME_EXPECTED = (
    "a name of letters, digits, '_', '.' and '-', not starting with '.'"
    " (it becomes a cgroup directory name)"
)
# What zoned.sizes.parse_size reads, minus values that are plainly zero.
SIZE_PATTERN = (
    r"^(?!\s*0*(\.0*)?\s*[A-Za-z]*\s*$)"
    r"\s*[0-9]+(\.[0-9]+)?\s*([BbKkMmGgTt]|[KkMmGgTt][Ii]?[Bb])?\s*$"
)
# A cgroup path relative to the cgroup root: no empty, '.' or '..' parts.
CGROUP_PATTERN = r"^(?!.*(^|/)\.\.?(/|$))/?[^/]+(/[^/]+)*$"
ABS_PATH_PATTERN = r"^/"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


class Kind(ABC):
    """How one value is read and validated. ``parse`` returns None after recording a problem."""

    expected: str

    @abstractmethod
    def parse(self, node: Node, path: str, sink: Sink) -> Any: ...

    @abstractmethod
    def schema(self) -> JSON: ...

    def bad(self, node: Node, path: str, sink: Sink, hint: str = "") -> None:
        sink.found(node, path, describe(node), self.expected + hint)


def _number(node: Node, integral: bool) -> int | float | None:
    """The number a scalar holds (bools are not numbers), or None."""
    if not isinstance(node, ScalarNode) or node.tag not in (TAG_INT, TAG_FLOAT):
        return None
    value = scalar_value(node)
    if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
        return None  # not a number, or NaN
    if integral:
        if isinstance(value, float):
            return int(value) if value.is_integer() else None
        return value
    return value


@dataclass
class IntKind(Kind):
    minimum: int = 0
    maximum: int | None = None
    what: str = "an integer"

    def __post_init__(self) -> None:
        top = f" and <= {self.maximum}" if self.maximum is not None else ""
        self.expected = f"{self.what} >= {self.minimum}{top}"

    def parse(self, node: Node, path: str, sink: Sink) -> int | None:
        value = _number(node, integral=True)
        if (
            value is None
            or value < self.minimum
            or (self.maximum is not None and value > self.maximum)
        ):
            self.bad(node, path, sink)
            return None
        return int(value)

    def schema(self) -> JSON:
        out: JSON = {"type": "integer", "minimum": self.minimum}
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return out


@dataclass
class NumberKind(Kind):
    """A real number in a range; each end open or closed."""

    low: float
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    what: str = "a number"

    def __post_init__(self) -> None:
        text = f"{self.what} {'>' if self.low_open else '>='} {_num(self.low)}"
        if self.high is not None:
            text += f" and {'<' if self.high_open else '<='} {_num(self.high)}"
        self.expected = text

    def parse(self, node: Node, path: str, sink: Sink) -> float | None:
        value = _number(node, integral=False)
        if value is None:
            self.bad(node, path, sink)
            return None
        too_low = value <= self.low if self.low_open else value < self.low
        too_high = self.high is not None and (
            value >= self.high if self.high_open else value > self.high
        )
        if too_low or too_high:
            self.bad(node, path, sink)
            return None
        return float(value)

    def schema(self) -> JSON:
        out: JSON = {"type": "number"}
        out["exclusiveMinimum" if self.low_open else "minimum"] = self.low
        if self.high is not None:
            out["exclusiveMaximum" if self.high_open else "maximum"] = self.high
        return out


@dataclass
class BoolKind(Kind):
    expected: str = "true or false"

    def parse(self, node: Node, path: str, sink: Sink) -> bool | None:
        if isinstance(node, ScalarNode) and node.tag == TAG_BOOL:
            return bool(scalar_value(node))
        self.bad(node, path, sink)
        return None

    def schema(self) -> JSON:
        return {"type": "boolean"}


@dataclass
class StrKind(Kind):
    """A string matching ``pattern`` (one regex for the parser and the schema)."""

    pattern: str
    expected: str

    def parse(self, node: Node, path: str, sink: Sink) -> str | None:
        if (
            isinstance(node, ScalarNode)
            and node.tag == TAG_STR
            and re.search(self.pattern, node.value)
        ):
            return str(node.value)
        self.bad(node, path, sink)
        return None

    def schema(self) -> JSON:
        return {"type": "string", "pattern": self.pattern}


@dataclass
class EnumKind(Kind):
    choices: tuple[str, ...]

    def __post_init__(self) -> None:
        self.expected = "one of " + ", ".join(self.choices)

    def parse(self, node: Node, path: str, sink: Sink) -> str | None:
        if isinstance(node, ScalarNode) and node.tag == TAG_STR and node.value in self.choices:
            return str(node.value)
        self.bad(node, path, sink)
        return None

    def schema(self) -> JSON:
        return {"enum": list(self.choices)}


NODE_ID = IntKind(0, what="a node id, an integer")


@dataclass
class NodeListKind(Kind):
    """A list of distinct node ids; each item's location is kept as ``path[i]``."""

    expected: str = "a list of node ids, like [0, 1]"

    def parse(self, node: Node, path: str, sink: Sink) -> tuple[int, ...] | None:
        if not isinstance(node, SequenceNode):
            self.bad(node, path, sink)
            return None
        out: list[int] = []
        first: dict[int, Node] = {}
        ok = True
        for i, item in enumerate(node.value):
            item_path = f"{path}[{i}]"
            sink.locate(item_path, item)
            n = NODE_ID.parse(item, item_path, sink)
            if n is None:
                ok = False
            elif n in first:
                where = sink.at(first[n])
                sink.found(item, item_path, f"node {n} again (first at {where})", "each node once")
                ok = False
            else:
                first[n] = item
                out.append(n)
        return tuple(out) if ok else None

    def schema(self) -> JSON:
        return {"type": "array", "items": NODE_ID.schema(), "uniqueItems": True}


@dataclass
class SharedKind(Kind):
    """The shared zone: a count of pool nodes to set aside (int), or a list of node ids."""

    expected: str = "a count of nodes (an integer >= 0) or a list of node ids, like [1]"

    def parse(self, node: Node, path: str, sink: Sink) -> int | tuple[int, ...] | None:
        if isinstance(node, SequenceNode):
            return NodeListKind().parse(node, path, sink)
        count = _number(node, integral=True)
        if count is None or count < 0:
            self.bad(node, path, sink)
            return None
        return int(count)

    def schema(self) -> JSON:
        return {"oneOf": [IntKind(0).schema(), NodeListKind().schema()]}


NODES_COUNT = IntKind(1, what="a whole number of nodes, an integer")


@dataclass
class AmountKind(Kind):
    """A size (``768M``, ``2G``, plain bytes) or a node count written ``{nodes: N}``; above zero."""

    expected: str = "a size above zero like 768M, 2G or 1.5GiB, a number of bytes, or {nodes: N}"

    def parse(self, node: Node, path: str, sink: Sink) -> Amount | None:
        if isinstance(node, MappingNode):
            before = len(sink.problems)
            values = parse_mapping(node, path, AMOUNT_FIELDS, sink)
            if values is None or len(sink.problems) > before:
                return None
            return Amount.nodes(values["nodes"])
        if not isinstance(node, ScalarNode):
            self.bad(node, path, sink)
            return None
        if node.tag == TAG_INT:
            n = _number(node, integral=True)
            if n is None or n < 1:
                self.bad(node, path, sink)
                return None
            return Amount.bytes_(int(n))
        if node.tag == TAG_STR and re.search(SIZE_PATTERN, node.value):
            n = parse_size(node.value)
            if n >= 1:
                return Amount.bytes_(n)
        m = re.fullmatch(r"\s*(\d+)\s*nodes?\s*", str(node.value))
        hint = f" (write a node count as {{nodes: {m.group(1)}}})" if m else ""
        self.bad(node, path, sink, hint)
        return None

    def schema(self) -> JSON:
        return {
            "oneOf": [
                {"type": "integer", "minimum": 1, "description": "bytes"},
                {"type": "string", "pattern": SIZE_PATTERN, "description": "768M, 2G, 1.5GiB"},
                section_schema(AMOUNT_FIELDS),
            ]
        }


@dataclass(frozen=True)
class Field:
    """One key: its name in YAML, its kind, what it means, and its default if optional."""

    name: str
    kind: Kind
    doc: str
    required: bool = False
    default: Any = None  # shown in the schema; None: no default shown


def _defaults(cls: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(cls):
        if f.default is not MISSING:
            value = f.default
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


_HOST = _defaults(HostDecl)
_POLICY = _defaults(PolicyDecl)
_CONTAINER = _defaults(ContainerDecl)

AMOUNT_FIELDS: tuple[Field, ...] = (
    Field("nodes", NODES_COUNT, "a whole number of nodes", required=True),
)

_PCT = "a percentage"

HOST_FIELDS: tuple[Field, ...] = (
    Field(
        "cgroup_root",
        StrKind(ABS_PATH_PATTERN, "an absolute path, like /sys/fs/cgroup"),
        "Where the cgroup tree is mounted.",
        default=_HOST["cgroup_root"],
    ),
    Field(
        "hierarchy",
        EnumKind(("auto", "v1", "v2")),
        "Which cgroup hierarchy to drive; auto detects it.",
        default=_HOST["hierarchy"],
    ),
    Field(
        "parent",
        StrKind(CGROUP_PATTERN, "a cgroup path under cgroup_root, like zoned"),
        "The cgroup (relative to cgroup_root) that zoned owns; containers it creates go under it.",
        default=_HOST["parent"],
    ),
    Field(
        "reserved_nodes",
        NodeListKind(),
        "Nodes left to the host and kernel, never lent.",
        default=_HOST["reserved_nodes"],
    ),
    Field(
        "shared",
        SharedKind(),
        "The shared zone: a count of pool nodes to set aside, or a list of node ids.",
        default=0,
    ),
    Field(
        "headroom_pct",
        NumberKind(0, 100, high_open=True, what=_PCT),
        "Share of its zones' capacity each container keeps free.",
        default=_HOST["headroom_pct"],
    ),
)

POLICY_FIELDS: tuple[Field, ...] = (
    Field(
        "cooldown_s",
        NumberKind(0, what="seconds"),
        "After a container gains or loses a node, leave it be this long.",
        default=_POLICY["cooldown_s"],
    ),
    Field(
        "idle_return_s",
        NumberKind(0, what="seconds"),
        "An idle container above its min returns a node after this long.",
        default=_POLICY["idle_return_s"],
    ),
    Field(
        "tripwire_pct",
        NumberKind(0, 100, low_open=True, what=_PCT),
        "The headroom tripwire fires at this share of a container's zones' capacity.",
        default=_POLICY["tripwire_pct"],
    ),
    Field(
        "shrink_below_pct",
        NumberKind(0, 100, low_open=True, high_open=True, what=_PCT),
        "A container using less than this share of one node fewer may shrink.",
        default=_POLICY["shrink_below_pct"],
    ),
    Field(
        "psi_some_ms",
        IntKind(1, what="milliseconds, an integer"),
        "PSI 'some' stall within a window that counts as pressure.",
        default=_POLICY["psi_some_ms"],
    ),
    Field(
        "psi_window_ms",
        IntKind(500, 10000, what="milliseconds, an integer"),
        "PSI trigger window (the kernel accepts 500 to 10000 ms).",
        default=_POLICY["psi_window_ms"],
    ),
    Field(
        "migrate_timeout_s",
        NumberKind(0, low_open=True, what="seconds"),
        "Deadline for a cpuset.mems write (page migration).",
        default=_POLICY["migrate_timeout_s"],
    ),
    Field(
        "reclaim_before_evacuate",
        BoolKind(),
        "Use directed reclaim when a donor's pages do not fit its other nodes.",
        default=_POLICY["reclaim_before_evacuate"],
    ),
)

CONTAINER_FIELDS: tuple[Field, ...] = (
    Field("min", AmountKind(), "Guaranteed memory, always held.", required=True),
    Field("max", AmountKind(), "Memory it may grow to; defaults to min."),
    Field(
        "priority",
        IntKind(0),
        "Higher is more important; the lowest gives nodes back first.",
        default=_CONTAINER["priority"],
    ),
    Field(
        "shared",
        BoolKind(),
        "May use the shared zone.",
        default=_CONTAINER["shared"],
    ),
    Field(
        "cgroup",
        StrKind(CGROUP_PATTERN, "a cgroup path under cgroup_root, like system.slice/web.service"),
        "An existing cgroup to adopt; when omitted zoned creates parent/NAME.",
    ),
)


def expected_keys(names: Sequence[str], key: str) -> str:
    """``one of a, b, c`` plus a did-you-mean for ``key`` when one is close."""
    text = "one of " + ", ".join(names)
    close = difflib.get_close_matches(key, names, n=1)
    return text + (f" (did you mean {close[0]!r}?)" if close else "")


def key_text(node: Node) -> str:
    return str(node.value) if isinstance(node, ScalarNode) else describe(node)


def parse_mapping(
    node: Node, path: str, table: Sequence[Field], sink: Sink, anchor: Node | None = None
) -> dict[str, Any] | None:
    """Read a mapping against ``table``: every key known, given once, required ones present.

    Returns the values that parsed, by key (the caller tells a clean read by whether
    problems were added), or None when ``node`` is not a mapping at all.
    ``anchor`` is where to point when a required key is missing (default: the mapping).
    """
    if isinstance(node, ScalarNode) and node.tag == TAG_NULL:
        node = MappingNode("tag:yaml.org,2002:map", [], node.start_mark, node.end_mark)
    if not isinstance(node, MappingNode):
        keys = ", ".join(f.name for f in table)
        sink.found(node, path, describe(node), f"a mapping with keys {keys}")
        return None
    by_name = {f.name: f for f in table}
    seen: dict[str, Node] = {}
    out: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key = key_text(key_node)
        sub = f"{path}.{key}" if path else key
        if key in seen:
            first = sink.at(seen[key])
            sink.found(key_node, sub, f"key {key!r} again (first at {first})", "each key once")
            continue
        seen[key] = key_node
        fld = by_name.get(key)
        if fld is None:
            sink.found(key_node, sub, "an unknown key", expected_keys(list(by_name), key))
            continue
        sink.locate(sub, value_node)
        value = fld.kind.parse(value_node, sub, sink)
        if value is not None:
            out[key] = value
    for fld in table:
        if fld.required and fld.name not in seen:
            sink.found(anchor or node, path, f"no {fld.name!r}", f"{fld.name}: {fld.kind.expected}")
    return out


def section_schema(table: Sequence[Field], doc: str = "") -> JSON:
    """The JSON Schema of a mapping read by ``parse_mapping(table)``."""
    props: JSON = {}
    for f in table:
        prop = {"description": f.doc, **f.kind.schema()}
        if f.default is not None:
            prop["default"] = f.default
        props[f.name] = prop
    out: JSON = {"type": ["object", "null"], "additionalProperties": False, "properties": props}
    if doc:
        out = {"description": doc, **out}
    required = [f.name for f in table if f.required]
    if required:
        out["type"] = "object"
        out["required"] = required
    return out


@dataclass
class SectionKind(Kind):
    """A fixed mapping (``host:``, ``policy:``) read against a table; may be empty or null."""

    table: tuple[Field, ...]

    def __post_init__(self) -> None:
        self.expected = "a mapping with keys " + ", ".join(f.name for f in self.table)

    def parse(self, node: Node, path: str, sink: Sink) -> dict[str, Any] | None:
        """The keys that parsed (the caller refuses the whole file if any problem was added)."""
        return parse_mapping(node, path, self.table, sink)

    def schema(self) -> JSON:
        return section_schema(self.table)


@dataclass
class ContainersKind(Kind):
    """``containers:``: name → container. Names are unique across the main file and drop-ins.

    Returns the containers that parsed; callers refuse everything if a problem was added.
    """

    expected: str = "a mapping of container names to {min, max, ...}"

    def parse(self, node: Node, path: str, sink: Sink) -> list[ContainerDecl] | None:
        if isinstance(node, ScalarNode) and node.tag == TAG_NULL:
            return []
        if not isinstance(node, MappingNode):
            self.bad(node, path, sink)
            return None
        out: list[ContainerDecl] = []
        for key_node, body in node.value:
            name = key_text(key_node)
            sub = f"{path}.{name}"
            if not isinstance(key_node, ScalarNode) or not re.search(NAME_PATTERN, name):
                sink.found(key_node, sub, f"container name {name!r}", NAME_EXPECTED)
            elif name in sink.defined:
                first = sink.defined[name]
                sink.found(
                    key_node,
                    sub,
                    f"container {name!r} again (first defined at {first})",
                    "each container defined once, in the main file or in one drop-in",
                )
            else:
                sink.defined[name] = sink.at(key_node)
                sink.locate(sub, key_node)
            values = parse_mapping(body, sub, CONTAINER_FIELDS, sink, anchor=key_node)
            if values is None or "min" not in values:
                continue
            low = values["min"]
            high = values.setdefault("max", low)
            if low.unit is high.unit and low.value > high.value:
                # Mixed units (bytes vs nodes) are compared by placement, once node sizes are known.
                where = _value_node(body, "min")
                sink.found(
                    where,
                    f"{sub}.min",
                    f"min {low} above max {high} (at {sink.at(_value_node(body, 'max'))})",
                    "min <= max",
                )
                continue
            out.append(ContainerDecl(name=name, **values))
        return out

    def schema(self) -> JSON:
        return {
            "type": ["object", "null"],
            "propertyNames": {"pattern": NAME_PATTERN},
            "additionalProperties": section_schema(CONTAINER_FIELDS),
        }


def _value_node(mapping: Node, key: str) -> Node:
    """The value node under ``key`` in a mapping already known to hold it."""
    assert isinstance(mapping, MappingNode)
    found: Node = next(v for k, v in mapping.value if key_text(k) == key)
    return found


TOP_FIELDS: tuple[Field, ...] = (
    Field(
        "host",
        SectionKind(HOST_FIELDS),
        "Where the cgroup tree is and which nodes are not lent.",
    ),
    Field("policy", SectionKind(POLICY_FIELDS), "Engine knobs; every name carries its unit."),
    Field(
        "containers",
        ContainersKind(),
        "Declared containers by name; the name becomes a cgroup directory. Drop-ins in"
        " containers.d/ beside the main file may hold only this section.",
    ),
)
DROPIN_KEYS = ("containers",)
