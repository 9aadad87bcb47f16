"""YAML as composed nodes that keep their positions, and problems that point at them.

PyYAML's constructors turn a mapping with a repeated key into a dict that silently keeps
the last value. ``compose`` stops one step earlier: a ``MappingNode`` keeps every
(key, value) pair in file order, each with a start mark, so the config reader can report
duplicate keys and give every problem a ``file:line:column`` (1-based).

Untrusted text is bounded here: at most ``MAX_DEPTH`` levels of nesting (PyYAML composes
recursively), at most ``MAX_NODES`` nodes once aliases are expanded (the readers walk the
expanded tree), and every problem is one line at the place the YAML reader stopped.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from zoned.errors import Location, Problem

__all__ = [
    "MappingNode",
    "Node",
    "ScalarNode",
    "SequenceNode",
    "Sink",
    "clip",
    "compose",
    "describe",
    "number_value",
    "quoted",
    "scalar_value",
]

#: Deepest nesting of lists and mappings accepted (a config needs about 6).
MAX_DEPTH = 64
#: Most nodes a document may hold with its aliases expanded (a config needs a few hundred).
MAX_NODES = 100_000
#: Longest scalar shown in a message; longer ones are shortened with their length.
SHOWN_CHARS = 40

TAG_NULL = "tag:yaml.org,2002:null"
TAG_BOOL = "tag:yaml.org,2002:bool"
TAG_INT = "tag:yaml.org,2002:int"
TAG_FLOAT = "tag:yaml.org,2002:float"
TAG_STR = "tag:yaml.org,2002:str"

_constructor = SafeConstructor()


class _BoundedLoader(yaml.SafeLoader):
    """A SafeLoader whose composer refuses nesting deeper than ``MAX_DEPTH``."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise ComposerError(None, None, f"nesting deeper than {MAX_DEPTH} levels", mark)
            node: Node | None = super().compose_node(parent, index)
            return node
        finally:
            self.depth -= 1


_BREAKS = "\n\x85\u2028\u2029"


def position(text: str, index: int) -> tuple[int, int]:
    """The 1-based (line, column) of character ``index``, counting breaks as PyYAML does."""
    line, column = 1, 1
    for i, ch in enumerate(text[:index]):
        if ch in _BREAKS or (ch == "\r" and text[i + 1 : i + 2] != "\n"):
            line, column = line + 1, 1
        else:
            column += 1
    return line, column


def one_line(text: str) -> str:
    """``text`` with runs of whitespace (newlines included) as one space."""
    return " ".join(text.split())


def clip(text: str) -> str:
    """``text`` for a message: control characters escaped, long text shortened."""
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[: SHOWN_CHARS + 1])
    if len(text) > SHOWN_CHARS:
        return f"{shown[:SHOWN_CHARS]}... ({len(text)} characters)"
    return shown


def compose(text: str, filename: str) -> Node | Problem | None:
    """The single document in ``text`` as a node tree; None when empty; a Problem if invalid
    (bad syntax, bad characters, nesting deeper than ``MAX_DEPTH``, more than ``MAX_NODES``
    nodes with aliases expanded), located where the reader stopped."""
    try:
        loader = _BoundedLoader(text)
        try:
            root: Node | None = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        where = Location(filename, line, column)
        what = one_line(" ".join(p for p in (exc.context, exc.problem) if p))
        return Problem(where, f"found invalid YAML ({what}); expected well-formed YAML")
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        line, column = position(text, exc.position)
        what = f"#x{exc.character:04x}" if isinstance(exc.character, int) else "a bad byte"
        return Problem(
            Location(filename, line, column),
            f"found the character {what}, which YAML does not allow; expected printable text",
        )
    except yaml.YAMLError as exc:
        return Problem(
            Location(filename, 1, 1), f"found unreadable YAML ({one_line(str(exc))}); expected text"
        )
    if root is None:
        return None
    odd: list[Node] = []
    if _count(root, {}, odd) > MAX_NODES:
        return Problem(
            Location(filename, 1, 1),
            f"found more than {MAX_NODES} nodes with aliases expanded; expected a smaller document",
        )
    if odd:  # "\ud800" escapes: no file name, path or pattern can hold one
        mark = odd[0].start_mark
        return Problem(
            Location(filename, mark.line + 1, mark.column + 1),
            "found a lone surrogate (an escape like \\ud800); expected valid Unicode text",
        )
    return root


_SURROGATE = re.compile("[\ud800-\udfff]")


def _count(node: Node, seen: dict[int, int], odd: list[Node]) -> int:
    """Nodes under ``node`` with aliases expanded (each shared node counted once per use);
    scalars holding a lone surrogate are added to ``odd``."""
    known = seen.get(id(node))
    if known is not None:
        return known
    total = 1
    if isinstance(node, SequenceNode):
        total += sum(_count(item, seen, odd) for item in node.value)
    elif isinstance(node, MappingNode):
        total += sum(_count(k, seen, odd) + _count(v, seen, odd) for k, v in node.value)
    elif isinstance(node.value, str) and _SURROGATE.search(node.value):
        odd.append(node)
    seen[id(node)] = min(total, MAX_NODES + 1)
    return seen[id(node)]


def scalar_value(node: ScalarNode) -> object:
    """The Python value of a scalar as YAML's safe rules resolve it (int, float, bool, str)."""
    return _constructor.construct_object(node, deep=True)


def number_value(node: ScalarNode) -> int | float | None:
    """An int or finite float scalar's value; None for anything else, an integer of more
    than 30 digits, or a float that overflows (so no number is unbounded)."""
    if node.tag not in (TAG_INT, TAG_FLOAT) or sum(c.isdigit() for c in node.value) > 30:
        return None  # long before Python's 4300-digit limit on int()
    try:
        value = scalar_value(node)
    except (ValueError, OverflowError):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def describe(node: Node) -> str:
    """What was found, for messages: ``string 'high'``, ``integer -1``, ``a list``."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    text = str(node.value)
    if node.tag == TAG_NULL:
        return "nothing (null)"
    kind = {TAG_BOOL: "boolean", TAG_INT: "integer", TAG_FLOAT: "number"}.get(node.tag)
    return f"{kind} {clip(text)}" if kind else f"string {quoted(text)}"


def quoted(text: str) -> str:
    """``text`` quoted for a message (``repr``), shortened with its length when long."""
    if len(text) > SHOWN_CHARS:
        return f"{text[:SHOWN_CHARS]!r}... ({len(text)} characters)"
    return repr(text)


@dataclass
class Sink:
    """Collects problems and the locations of keys while one set of files is read.

    ``defined`` remembers where names that must be unique across files were first
    defined (container names), so a repeat in a later file can point at both places.
    """

    filename: str = "<string>"
    problems: list[Problem] = field(default_factory=list)
    locations: dict[str, Location] = field(default_factory=dict)
    defined: dict[str, Location] = field(default_factory=dict)
    bad_paths: set[str] = field(default_factory=set)  # dotted keys that had a problem

    def at(self, node: Node) -> Location:
        mark = node.start_mark
        return Location(self.filename, mark.line + 1, mark.column + 1)

    def locate(self, path: str, node: Node) -> None:
        """Remember where ``path`` was written (the first place wins)."""
        self.locations.setdefault(path, self.at(node))

    def found(self, node: Node, path: str, found: str, expected: str) -> None:
        """Record ``<loc>: <path>: found <found>; expected <expected>`` and mark ``path`` bad."""
        self.bad_paths.add(path)
        prefix = f"{clip_path(path)}: " if path else ""
        self.problems.append(Problem(self.at(node), f"{prefix}found {found}; expected {expected}"))


def clip_path(path: str) -> str:
    """A dotted key for a message, each part shown with ``clip``."""
    return ".".join(clip(part) for part in path.split("."))
