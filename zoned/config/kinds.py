"""Kinds of configuration values: each reads a composed YAML node and renders its JSON Schema.

A ``Kind`` parses one node, recording a problem in the ``Sink`` when it cannot (and then
returning None), and gives the JSON Schema fragment that accepts the same values. The
tables of ``Field``s built from these kinds live in ``zoned.config.fields``.
"""

from __future__ import annotations

import difflib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from zoned.config.decl import Amount
from zoned.config.match import MatchRule, Pattern
from zoned.config.yamlpos import (
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
    number_value,
    quoted,
    scalar_value,
)
from zoned.model.sizes import parse_size

JSON = dict[str, Any]

#: The largest integer any key accepts (a signed 64-bit value, as the kernel's counters).
INT_LIMIT = (1 << 63) - 1
#: The largest real number any key accepts (seconds: about 31 years; beyond, timeouts overflow).
FLOAT_LIMIT = 1e9

# What zoned.model.sizes.parse_size reads, minus values written as plainly zero.
SIZE_PATTERN = (
    r"^(?!\s*0*(\.0*)?\s*[A-Za-z]*\s*$)"
    r"\s*[0-9]+(\.[0-9]+)?\s*([BbKkMmGgTt]|[KkMmGgTt][Ii]?[Bb])?\s*$"
)


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


def _bound_hint(node: Node) -> str:
    """Why a number that YAML reads as one was still refused: it is beyond zoned's bounds."""
    nan = isinstance(node, ScalarNode) and "nan" in node.value.lower()
    if isinstance(node, ScalarNode) and node.tag in (TAG_INT, TAG_FLOAT) and not nan:
        return " (numbers are finite, integers at most 2^63-1, reals at most 1e9)"
    return ""


def _number(node: Node, integral: bool) -> int | float | None:
    """The number a scalar holds (bools are not numbers), or None; bounded: no NaN, no
    infinity, no integer beyond ``INT_LIMIT`` nor float beyond ``FLOAT_LIMIT``."""
    if not isinstance(node, ScalarNode):
        return None
    value = number_value(node)
    if value is None or abs(value) > (INT_LIMIT if isinstance(value, int) else FLOAT_LIMIT):
        return None
    if integral:
        if isinstance(value, float):
            return int(value) if value.is_integer() else None
        return value
    return value


def size_value(text: str) -> int | None:
    """The bytes a size string names (``parse_size``), or None when unreadable or above
    ``INT_LIMIT``."""
    if len(text) > 64:
        return None
    try:
        n = parse_size(text)
    except ValueError:
        return None
    return n if n <= INT_LIMIT else None


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
        if value is None and isinstance(node, ScalarNode) and node.tag == TAG_INT:
            self.bad(node, path, sink, _bound_hint(node))
            return None
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
            self.bad(node, path, sink, _bound_hint(node))
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
            and re.fullmatch(self.pattern, node.value)
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


T = TypeVar("T")


def parse_distinct(
    node: SequenceNode,
    path: str,
    sink: Sink,
    parse_item: Callable[[Node, str, Sink], T | None],
    *,
    key: Callable[[T], Hashable],
    name: Callable[[T], str],
    once: str,
) -> tuple[T, ...] | None:
    """A list whose items must be distinct by ``key``: each item parsed and located as
    ``path[i]``; a repeat is a problem naming where the first one was (``once`` is what
    was expected). None when any item is bad."""
    out: list[T] = []
    first: dict[Hashable, Node] = {}
    ok = True
    for i, item in enumerate(node.value):
        item_path = f"{path}[{i}]"
        sink.locate(item_path, item)
        value = parse_item(item, item_path, sink)
        if value is None:
            ok = False
        elif key(value) in first:
            where = sink.at(first[key(value)])
            sink.found(item, item_path, f"{name(value)} again (first at {where})", once)
            ok = False
        else:
            first[key(value)] = item
            out.append(value)
    return tuple(out) if ok else None


@dataclass
class NodeListKind(Kind):
    """A list of distinct node ids; each item's location is kept as ``path[i]``."""

    expected: str = "a list of node ids, like [0, 1]"

    def parse(self, node: Node, path: str, sink: Sink) -> tuple[int, ...] | None:
        if not isinstance(node, SequenceNode):
            self.bad(node, path, sink)
            return None
        return parse_distinct(
            node, path, sink, NODE_ID.parse, key=lambda n: n, name=lambda n: f"node {n}",
            once="each node once",
        )  # fmt: skip

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


@dataclass
class PathListKind(Kind):
    """A list of distinct absolute paths (files or directories); each item located."""

    expected: str = "a list of absolute paths, like [/srv/models, /usr/lib]"

    def parse(self, node: Node, path: str, sink: Sink) -> tuple[str, ...] | None:
        if isinstance(node, ScalarNode) and node.tag == TAG_NULL:
            return ()
        if not isinstance(node, SequenceNode):
            self.bad(node, path, sink)
            return None
        out: list[str] = []
        ok = True
        for i, item in enumerate(node.value):
            item_path = f"{path}[{i}]"
            sink.locate(item_path, item)
            if not (
                isinstance(item, ScalarNode) and item.tag == TAG_STR and item.value.startswith("/")
            ):
                sink.found(item, item_path, describe(item), "an absolute path")
                ok = False
            elif item.value in out:
                sink.found(item, item_path, f"{quoted(item.value)} again", "each path once")
                ok = False
            else:
                out.append(str(item.value))
        return tuple(out) if ok else None

    def schema(self) -> JSON:
        return {
            "type": ["array", "null"],
            "items": {"type": "string", "pattern": "^/"},
            "uniqueItems": True,
        }


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
            n = size_value(node.value) or 0
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


@dataclass
class PatternKind(Kind):
    """A string test (``zoned.policy.rules.Pattern``): plain text, ``glob:…`` or ``re:…``."""

    expected: str = (
        "a non-empty string: exact text, glob:PATTERN or re:REGEX (a Python regular expression)"
    )

    def parse(self, node: Node, path: str, sink: Sink) -> Pattern | None:
        if not (isinstance(node, ScalarNode) and node.tag == TAG_STR and node.value):
            self.bad(node, path, sink)
            return None
        try:
            return Pattern.parse(str(node.value))
        except ValueError as exc:
            sink.found(node, path, str(exc), "a valid Python regular expression after re:")
            return None

    def schema(self) -> JSON:
        return {"type": "string", "minLength": 1}


USER_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]*\$?$"


@dataclass
class UserKind(Kind):
    """A user: a name, or a numeric uid."""

    expected: str = "a user name like batch, or a uid (an integer >= 0)"

    def parse(self, node: Node, path: str, sink: Sink) -> str | int | None:
        if isinstance(node, ScalarNode) and node.tag == TAG_STR:
            if re.fullmatch(USER_NAME_PATTERN, node.value):
                return str(node.value)
        else:
            uid = _number(node, integral=True)
            if uid is not None and uid >= 0:
                return int(uid)
        self.bad(node, path, sink)
        return None

    def schema(self) -> JSON:
        return {
            "oneOf": [
                {"type": "string", "pattern": USER_NAME_PATTERN},
                {"type": "integer", "minimum": 0},
            ]
        }


@dataclass
class MatchListKind(Kind):
    """A container's ``match:``: a list of rules, each a mapping read against ``table``
    with at least one key (all keys of one rule must hold; any rule may match)."""

    table: tuple[Field, ...]

    def __post_init__(self) -> None:
        keys = ", ".join(f.name for f in self.table)
        self.expected = f"a list of rules, each a mapping with one or more of {keys}"

    def parse(self, node: Node, path: str, sink: Sink) -> tuple[MatchRule, ...] | None:
        if isinstance(node, ScalarNode) and node.tag == TAG_NULL:
            return ()
        if not isinstance(node, SequenceNode):
            self.bad(node, path, sink)
            return None
        out: list[MatchRule] = []
        ok = True
        for i, item in enumerate(node.value):
            item_path = f"{path}[{i}]"
            sink.locate(item_path, item)
            before = len(sink.problems)
            values = parse_mapping(item, item_path, self.table, sink)
            if values is None or len(sink.problems) > before:
                ok = False
            elif not values:
                keys = ", ".join(f.name for f in self.table)
                sink.found(item, item_path, "an empty rule", f"one or more of {keys}")
                ok = False
            else:
                out.append(MatchRule(**values))
        return tuple(out) if ok else None

    def schema(self) -> JSON:
        rule = section_schema(self.table)
        rule["type"] = "object"
        rule["minProperties"] = 1
        return {"type": ["array", "null"], "items": rule}


@dataclass(frozen=True)
class Field:
    """One key: its name in YAML, its kind, what it means, and its default if optional."""

    name: str
    kind: Kind
    doc: str
    required: bool = False
    default: Any = None  # shown in the schema; None: no default shown


AMOUNT_FIELDS: tuple[Field, ...] = (
    Field("nodes", NODES_COUNT, "a whole number of nodes", required=True),
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
            sink.found(
                key_node, sub, f"key {quoted(key)} again (first at {first})", "each key once"
            )
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
