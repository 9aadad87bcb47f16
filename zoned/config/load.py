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
from zoned.config.yamlpos import MappingNode, Sink, compose, position
from zoned.errors import ConfigError, Location, Problem
from zoned.model.nodelist import format_nodelist
from zoned.model.zonemap import Topology

DROPIN_DIR = "containers.d"
#: The largest file read (a configuration is a few KiB; this bounds memory and time).
MAX_FILE_BYTES = 1 << 20

__all__ = [
    "DEFAULT_PATH",
    "DROPIN_DIR",
    "ONE_NODE",
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
            with p.open("rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            problems.append(
                Problem(None, f"{p}: found no readable file ({exc.strerror}); expected YAML")
            )
            continue
        text = _decode(data, str(p))
        if isinstance(text, Problem):
            problems.append(text)
        else:
            sources.append((str(p), text))
    if problems:
        raise ConfigError(problems)
    return _build(sources)


def _decode(data: bytes, filename: str) -> str | Problem:
    """A file's bytes as text, or a located problem (too large, not UTF-8)."""
    if len(data) > MAX_FILE_BYTES:
        line, column = position(data[:MAX_FILE_BYTES].decode("utf-8", "replace"), MAX_FILE_BYTES)
        return Problem(
            Location(filename, line, column),
            f"found a file larger than {MAX_FILE_BYTES} bytes; expected a smaller configuration",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start].decode("utf-8", "replace")
        line, column = position(before, len(before))
        return Problem(
            Location(filename, line, column),
            f"found the byte {data[exc.start]:#04x}, which is not UTF-8; expected UTF-8 text",
        )


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
        containers=tuple(c for c in containers if c.engine is None),
        templates=tuple(c for c in containers if c.engine is not None),
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
    if clean("host.parent"):
        out.extend(_cgroup_clashes(decls, bad_paths))
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


def _parts(cgroup: str) -> tuple[str, ...]:
    return tuple(cgroup.strip("/").split("/"))


def _cgroup_clashes(decls: Declarations, bad_paths: set[str]) -> list[Problem]:
    """Each container's cgroup (its ``cgroup:``, or parent/NAME) is its own: not another's,
    not inside or around another's, not the parent nor around it, not zoned's own
    (parent/zoned.*)."""
    parent = _parts(decls.host.parent)
    taken: list[tuple[tuple[str, ...], str]] = []  # (parts, key) in declaration order
    out: list[Problem] = []
    for c in decls.containers:
        key = f"containers.{c.name}.cgroup"
        own = f"containers.{c.name}"
        if any(p == own or p.startswith(f"{own}.") for p in bad_paths):
            continue
        parts = _parts(c.cgroup) if c.cgroup is not None else (*parent, c.name)
        shown = "/".join(parts)
        found = ""
        if c.cgroup is not None and parent[: len(parts)] == parts:
            found = f"{shown}, which is zoned's parent cgroup ({decls.host.parent}) or holds it"
        elif parts[: len(parent)] == parent and parts[len(parent)].startswith("zoned."):
            found = f"{shown}, which is zoned's own cgroup under its parent"
        for other, other_key in taken:
            if found:
                break
            n = min(len(other), len(parts))
            if other[:n] == parts[:n]:
                relation = (
                    "the cgroup of"
                    if other == parts
                    else ("inside the cgroup of" if len(parts) > len(other) else "around")
                )
                name = other_key.split(".", 1)[1].rsplit(".", 1)[0]
                found = f"{shown}, {relation} container {name!r} (at {decls.where(other_key)})"
        if found:
            out.append(_problem(decls, key, found, "a cgroup that no other container holds"))
        taken.append((parts, key))
    return out


ONE_NODE = (
    "this host has one NUMA node with memory, and zoned hands out whole nodes: boot it with "
    "numa=fake=N (`zoned topology` prints N and the boot-loader steps)"
)


def check_against_topology(decls: Declarations, topology: Topology) -> list[Problem]:
    """Problems with node references given this machine's nodes, in file order.

    A machine with at most one node with memory gives the one problem ``ONE_NODE`` and
    nothing else: every other check would only restate it. Otherwise every node in
    ``host.reserved_nodes`` and an explicit ``host.shared`` list must exist and have
    memory, and a shared count cannot exceed the pool it is taken from (the nodes with
    memory that are neither reserved nor listed shared, as placement takes it). Whether
    the pool left over fits the containers' ``min`` is placement's question, not this one.
    """
    existing = set(topology.node_ids)
    with_memory = set(topology.memory_node_ids)
    if len(with_memory) <= 1:
        return [Problem(None, ONE_NODE)]
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
    pool = with_memory - set(decls.host.reserved_nodes) - set(decls.host.shared_nodes)
    if count > len(pool):
        out.append(
            _problem(
                decls,
                "host.shared",
                f"a count of {count} shared nodes",
                f"at most {len(pool)}, the nodes with memory on this machine "
                f"({format_nodelist(with_memory)}) less the reserved ones",
            )
        )
    return _in_file_order(out, decls.files)
