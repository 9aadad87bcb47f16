"""YAML declarations → a validated ``Declarations``, or every problem at once.

A main file (default ``/etc/zoned/zoned.yaml``) holds ``host:``, ``policy:`` and
``containers:``; drop-ins (``containers.d/*.yaml`` beside it, read in name order) hold only
``containers:``. Keys and their kinds come from the table in ``zoned.config.fields``, which the
JSON Schema is generated from too.

Contract: ``load``/``loads`` return a complete ``Declarations`` or raise ``ConfigError``
listing every problem found, in file order, each as
``file:line:column: <dotted.key>: found <what>; expected <what>``. Nothing partial is
returned. ``min`` > ``max`` is checked here only when both are in the same unit; a size
against a node count is compared by placement, which knows the node sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from zoned.config.decl import ContainerDecl, Declarations, HostDecl, PolicyDecl
from zoned.config.fields import DROPIN_KEYS, TOP_FIELDS
from zoned.config.kinds import key_text, parse_mapping
from zoned.config.paths import DEFAULT_PATH
from zoned.config.yamlpos import MappingNode, Sink, compose
from zoned.errors import ConfigError, Location, Problem
from zoned.model.nodelist import format_nodelist
from zoned.model.zonemap import Topology

DROPIN_DIR = "containers.d"

__all__ = [
    "DEFAULT_PATH",
    "DROPIN_DIR",
    "check_against_topology",
    "dropin_paths",
    "load",
    "loads",
]


def dropin_paths(main: Path) -> list[Path]:
    """The drop-ins of a main file: ``containers.d/*.yaml`` beside it, in name order."""
    directory = main.parent / DROPIN_DIR
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.glob("*.yaml") if p.is_file()), key=lambda p: p.name)


def load(path: Path) -> Declarations:
    """Read a main file and its drop-ins. Raises ConfigError with every problem found."""
    sources: list[tuple[str, str | None]] = []
    problems: list[Problem] = []
    for p in [path, *dropin_paths(path)]:
        try:
            sources.append((str(p), p.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            problems.append(Problem(None, f"{p}: found no readable file ({reason}); expected YAML"))
    if problems:
        raise ConfigError(problems)
    return _build(sources)


def loads(text: str, filename: str = "<string>") -> Declarations:
    """Read one main file's text (no drop-ins). Raises ConfigError with every problem found."""
    return _build([(filename, text)])


def loads_many(sources: Sequence[tuple[str, str]]) -> Declarations:
    """Read a main file then drop-ins, given as (filename, text) in order; for tests and tools."""
    return _build(list(sources))


def _build(sources: Sequence[tuple[str, str | None]]) -> Declarations:
    """Parse every file, then check across fields; raise with all problems in file order.

    Cross-field checks run on what did parse, so one bad value does not hide another
    problem; the result is only returned when there is no problem at all.
    """
    sink = Sink()
    sections: dict[str, Any] = {}
    containers: list[ContainerDecl] = []
    for index, (filename, text) in enumerate(sources):
        sink.filename = filename
        values = _read_file(text or "", sink, main=index == 0) or {}
        for key in ("host", "policy"):
            if values.get(key) is not None:
                sections[key] = values[key]
        containers.extend(values.get("containers") or [])
    decls = Declarations(
        host=_host(sections.get("host", {})),
        policy=PolicyDecl(**sections.get("policy", {})),
        containers=tuple(containers),
        files=tuple(name for name, _ in sources),
        locations=MappingProxyType(dict(sink.locations)),
    )
    problems = sink.problems + _cross_checks(decls, sink.bad_paths)
    if problems:
        raise ConfigError(_in_file_order(problems, decls.files))
    return decls


def _in_file_order(problems: list[Problem], files: Sequence[str]) -> list[Problem]:
    """Sorted by file (in reading order), line and column; stable for equal places."""
    order = {name: i for i, name in enumerate(files)}

    def key(p: Problem) -> tuple[int, int, int]:
        w = p.where or Location("", 0, 0)
        return (order.get(w.file, -1), w.line, w.column)

    return sorted(problems, key=key)


def _read_file(text: str, sink: Sink, main: bool) -> dict[str, Any] | None:
    root = compose(text, sink.filename)
    if isinstance(root, Problem):
        sink.problems.append(root)
        return None
    if root is None:
        return {}
    if not main and isinstance(root, MappingNode):
        kept = []
        for key_node, value in root.value:
            key = key_text(key_node)
            if key in {f.name for f in TOP_FIELDS} and key not in DROPIN_KEYS:
                sink.found(
                    key_node,
                    key,
                    f"a {key!r} section in a drop-in",
                    "only 'containers' (host and policy belong in the main file)",
                )
            else:
                kept.append((key_node, value))
        root = MappingNode(root.tag, kept, root.start_mark, root.end_mark)
    table = TOP_FIELDS if main else tuple(f for f in TOP_FIELDS if f.name in DROPIN_KEYS)
    return parse_mapping(root, "", table, sink)


def _host(values: dict[str, Any]) -> HostDecl:
    values = dict(values)
    shared = values.pop("shared", 0)
    if isinstance(shared, tuple):
        return HostDecl(**values, shared_nodes=shared)
    return HostDecl(**values, shared_count=shared)


def _problem(decls: Declarations, key: str, found: str, expected: str) -> Problem:
    return Problem(decls.where(key), f"{key}: found {found}; expected {expected}")


def _cross_checks(decls: Declarations, bad_paths: set[str]) -> list[Problem]:
    """Checks between fields; each runs only when none of its fields had a problem."""

    def clean(*keys: str) -> bool:
        return not any(p.startswith(keys) for p in bad_paths)

    out: list[Problem] = []
    reserved = set(decls.host.reserved_nodes)
    shared_ok = clean("host.reserved_nodes", "host.shared")
    for i, n in enumerate(decls.host.shared_nodes if shared_ok else ()):
        if n in reserved:
            out.append(
                _problem(
                    decls,
                    f"host.shared[{i}]",
                    f"node {n}, which is in host.reserved_nodes",
                    "shared nodes that are not reserved",
                )
            )
    tmpfs = decls.host.shared_tmpfs
    has_zone = bool(decls.host.shared_nodes or decls.host.shared_count)
    if tmpfs and not has_zone and clean("host.shared"):
        out.append(
            _problem(
                decls,
                "host.shared_tmpfs",
                f"{len(tmpfs)} shared tmpfs mount point"
                + ("s" if len(tmpfs) != 1 else "")
                + " but no shared zone (host.shared is 0)",
                "a shared zone for their mpol=bind (host.shared: a count or a list of nodes)",
            )
        )
    pol = decls.policy
    if pol.psi_some_ms > pol.psi_window_ms and clean("policy.psi_"):
        key = (
            "policy.psi_some_ms"
            if "policy.psi_some_ms" in decls.locations
            else ("policy.psi_window_ms")
        )
        out.append(
            _problem(
                decls,
                key,
                f"psi_some_ms {pol.psi_some_ms} above psi_window_ms {pol.psi_window_ms}",
                "a stall no longer than its window",
            )
        )
    return out


def check_against_topology(decls: Declarations, topology: Topology) -> list[Problem]:
    """Problems with node references given this machine's nodes, in file order.

    Every node in ``host.reserved_nodes`` and an explicit ``host.shared`` list must exist and
    have memory; a shared count cannot exceed the nodes with memory. Whether the pool left
    over fits the containers' ``min`` is placement's question, not this one.
    """
    existing = set(topology.node_ids)
    with_memory = set(topology.memory_node_ids)
    out: list[Problem] = []
    lists = (
        ("host.reserved_nodes", decls.host.reserved_nodes),
        ("host.shared", decls.host.shared_nodes),
    )
    for key, nodes in lists:
        for i, n in enumerate(nodes):
            item = f"{key}[{i}]"
            if n not in existing:
                have = format_nodelist(existing) or "none"
                out.append(
                    _problem(
                        decls,
                        item,
                        f"node {n}, which this machine does not have",
                        f"one of its nodes ({have})",
                    )
                )
            elif n not in with_memory:
                have = format_nodelist(with_memory) or "none"
                out.append(
                    _problem(
                        decls,
                        item,
                        f"node {n}, which has no memory",
                        f"a node with memory ({have})",
                    )
                )
    count = decls.host.shared_count
    if count > len(with_memory):
        out.append(
            _problem(
                decls,
                "host.shared",
                f"a count of {count} shared nodes",
                f"at most {len(with_memory)}, the nodes with memory on this machine",
            )
        )
    return _in_file_order(out, decls.files)
