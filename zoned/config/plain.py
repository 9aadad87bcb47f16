"""YAML as plain values with positions, and small readers that turn bad values into
ConfigError: what scenario files are read with.

``load_yaml`` composes through ``zoned.config.yamlpos`` (the one YAML reader, shared with
the configuration) and builds plain Python values plus a map from each value's dotted
path (``workloads.web.phases[2].ramp.over_s``) to its ``file:line:column``, so every
problem can point at the line that caused it.
"""

from __future__ import annotations

import errno as errno_mod
from collections.abc import Mapping
from dataclasses import dataclass, field

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from zoned.config.yamlpos import compose, scalar_value
from zoned.errors import ConfigError, Location, Problem
from zoned.model.sizes import parse_size


@dataclass
class Doc:
    """A parsed YAML document: plain values and where each dotted path was written."""

    filename: str
    value: object
    positions: dict[str, Location] = field(default_factory=dict)

    def where(self, path: str) -> Location | None:
        """The location of ``path`` or of its nearest enclosing path that has one."""
        while path:
            if path in self.positions:
                return self.positions[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return self.positions.get("")

    def fail(self, path: str, message: str) -> ConfigError:
        """A ConfigError at ``path``: ``file:line:col: path: message``."""
        prefix = f"{path}: " if path else ""
        return ConfigError([Problem(self.where(path), prefix + message)])


def load_yaml(text: str, filename: str) -> Doc:
    """Compose ``text``; raise ConfigError with the position of a syntax error."""
    node = compose(text, filename)
    if isinstance(node, Problem):
        raise ConfigError([node])
    doc = Doc(filename, None)
    if node is not None:
        doc.value = _build(node, "", doc)
    return doc


def _build(node: Node, path: str, doc: Doc) -> object:
    mark = node.start_mark
    doc.positions.setdefault(path, Location(doc.filename, mark.line + 1, mark.column + 1))
    if isinstance(node, MappingNode):
        out: dict[str, object] = {}
        for knode, vnode in node.value:
            key = str(scalar_value(knode))
            sub = f"{path}.{key}" if path else key
            if key in out:
                kmark = knode.start_mark
                loc = Location(doc.filename, kmark.line + 1, kmark.column + 1)
                raise ConfigError([Problem(loc, f"{sub}: key written twice")])
            out[key] = _build(vnode, sub, doc)
        return out
    if isinstance(node, SequenceNode):
        return [_build(v, f"{path}[{i}]", doc) for i, v in enumerate(node.value)]
    assert isinstance(node, ScalarNode)
    return scalar_value(node)


# ---------------------------------------------------------------------------------------
# Readers: each takes the value, its path and the Doc for errors.


def as_mapping(doc: Doc, value: object, path: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise doc.fail(path, f"found {_what(value)}; expected a mapping")
    return value


def as_list(doc: Doc, value: object, path: str) -> list[object]:
    if not isinstance(value, list):
        raise doc.fail(path, f"found {_what(value)}; expected a list")
    return value


def as_size(doc: Doc, value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise doc.fail(path, f"found {_what(value)}; expected a size such as 256M")
    try:
        return parse_size(value)
    except ValueError as exc:
        raise doc.fail(path, str(exc)) from None


def as_rate(doc: Doc, value: object, path: str) -> int:
    """Bytes per second, written as a size (``125M``) or ``125M/s``."""
    if isinstance(value, str) and value.strip().endswith("/s"):
        value = value.strip()[:-2]
    return as_size(doc, value, path)


def as_seconds(doc: Doc, value: object, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise doc.fail(path, f"found {_what(value)}; expected seconds (a number >= 0)")
    return float(value)


def as_number(doc: Doc, value: object, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise doc.fail(path, f"found {_what(value)}; expected a number")
    return float(value)


def as_int(doc: Doc, value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise doc.fail(path, f"found {_what(value)}; expected an integer")
    return value


def as_bool(doc: Doc, value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise doc.fail(path, f"found {_what(value)}; expected true or false")
    return value


def as_str(doc: Doc, value: object, path: str) -> str:
    if not isinstance(value, str):
        raise doc.fail(path, f"found {_what(value)}; expected a string")
    return value


def as_errno(doc: Doc, value: object, path: str) -> int:
    """An errno by name (``EBUSY``) or number."""
    if isinstance(value, str) and hasattr(errno_mod, value.upper()):
        code = getattr(errno_mod, value.upper())
        if isinstance(code, int):
            return code
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise doc.fail(path, f"found {_what(value)}; expected an errno name such as EBUSY")


def check_keys(
    doc: Doc,
    m: Mapping[str, object],
    path: str,
    allowed: tuple[str, ...],
    required: tuple[str, ...] = (),
) -> None:
    """Refuse unknown keys (with the accepted ones listed) and missing required keys."""
    for k in m:
        if k not in allowed:
            sub = f"{path}.{k}" if path else k
            raise doc.fail(sub, f"unknown key; expected one of {', '.join(allowed)}")
    for k in required:
        if k not in m:
            raise doc.fail(path, f"missing {k!r}")


def _what(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, (int, float)):
        return f"number {value}"
    return f"string {value!r}"


def empty_doc(filename: str = "<scenario>") -> Doc:
    """A Doc with no positions, for parsing values built in Python."""
    return Doc(filename, None)
