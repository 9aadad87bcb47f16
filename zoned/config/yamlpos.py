"""YAML as composed nodes that keep their positions, and problems that point at them.

PyYAML's constructors turn a mapping with a repeated key into a dict that silently keeps
the last value. ``compose`` stops one step earlier: a ``MappingNode`` keeps every
(key, value) pair in file order, each with a start mark, so the config reader can report
duplicate keys and give every problem a ``file:line:column`` (1-based).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from zoned.errors import Location, Problem

__all__ = [
    "MappingNode",
    "Node",
    "ScalarNode",
    "SequenceNode",
    "Sink",
    "compose",
    "describe",
    "scalar_value",
]

TAG_NULL = "tag:yaml.org,2002:null"
TAG_BOOL = "tag:yaml.org,2002:bool"
TAG_INT = "tag:yaml.org,2002:int"
TAG_FLOAT = "tag:yaml.org,2002:float"
TAG_STR = "tag:yaml.org,2002:str"

_constructor = SafeConstructor()


def compose(text: str, filename: str) -> Node | Problem | None:
    """The single document in ``text`` as a node tree; None when empty; a Problem if invalid."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(filename, mark.line + 1, mark.column + 1) if mark else None
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        return Problem(where, f"found invalid YAML ({what}); expected well-formed YAML")
    except yaml.YAMLError as exc:  # e.g. a reader error on bad bytes
        return Problem(Location(filename, 1, 1), f"found unreadable YAML ({exc}); expected text")


def scalar_value(node: ScalarNode) -> object:
    """The Python value of a scalar as YAML's safe rules resolve it (int, float, bool, str)."""
    return _constructor.construct_object(node, deep=True)


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
    return f"{kind} {text}" if kind else f"string {text!r}"


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
        prefix = f"{path}: " if path else ""
        self.problems.append(Problem(self.at(node), f"{prefix}found {found}; expected {expected}"))
