"""``zoned check CONFIG…``: validate declarations, report every problem, apply nothing.

Each CONFIG is a main file; its drop-ins (``containers.d/*.yaml`` beside it) are read too.
Exit 0 with one summary line per file on stdout, or 1 with every problem on stderr, one
per line as ``file:line:column: <key>: found <what>; expected <what>``.

Node references (reserved nodes, a shared node list) are checked against the machine's
topology when ``--sysfs-root``/``--proc-root`` are given, or by default when
``/sys/devices/system/node`` exists; ``--no-topology`` skips that.

On a cgroup v1 host, one more line says whether the root's host-wide
``cpuset.memory_pressure_enabled`` is on and what ``zoned run --v1-memory-pressure`` does.

JSON (``--json``), schema ``zoned/check/v1`` (docs/json.md), on stdout whatever the outcome::

    {"schema": "zoned/check/v1", "ok": true, "topology_nodes": [0, 1, ...] | null,
     "v1_memory_pressure": "cgroup v1: ... is off (0) ..." | null,
     "configs": [{"config": "config/zoned.yaml", "ok": true, "summary": "...",
                  "files": ["config/zoned.yaml", ...],
                  "containers": [{"name": "web", "min": {"value": 2, "unit": "nodes"},
                                  "max": {...}, "priority": 10, "shared": true,
                                  "cgroup": null}, ...],
                  "problems": [{"file": "...", "line": 3, "column": 5,
                                "message": "...", "text": "file:3:5: ..."}],
                  "warnings": [<as problems: where it was declared, or nulls>]}]}
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoned.cli.commands._index import describe
from zoned.config.decl import Amount, AmountUnit, Declarations
from zoned.config.load import check_against_topology, load
from zoned.config.paths import DEFAULT_PATH
from zoned.errors import ConfigError, Problem
from zoned.kernel.roots import PROC_ROOT, SYS_ROOT
from zoned.model.jsondoc import envelope
from zoned.model.nodelist import format_nodelist
from zoned.model.sizes import format_size
from zoned.model.zonemap import Topology

LIVE_NODES = SYS_ROOT / "devices" / "system" / "node"


DESCRIPTION = """\
Validate zoned declarations: a main file and its containers.d/ drop-ins, each field
against its type and range, node references against this machine's topology (from
/sys, unless --no-topology). Every problem is reported as file:line:column; warnings
go to stderr and do not fail the check. Nothing is applied.

examples:
  zoned check                              # /etc/zoned/zoned.yaml
  zoned check config/zoned.yaml --no-topology
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("check", **describe("check", DESCRIPTION))
    p.add_argument(
        "configs",
        nargs="*",
        type=Path,
        metavar="CONFIG",
        default=[DEFAULT_PATH],
        help=f"main files to check (default: {DEFAULT_PATH})",
    )
    p.add_argument("--sysfs-root", type=Path, metavar="DIR", help="check nodes against DIR")
    p.add_argument("--proc-root", type=Path, metavar="DIR", help="procfs root (default: /proc)")
    p.add_argument("--no-topology", action="store_true", help="do not check node references")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


@dataclass
class Result:
    """One CONFIG's outcome: its declarations when valid, else its problems."""

    config: Path
    decls: Declarations | None = None
    problems: list[Problem] = field(default_factory=list)


def run(args: argparse.Namespace) -> int:
    topology = _topology(args)
    results = [check_one(path, topology) for path in args.configs]
    ok = all(not r.problems for r in results)
    if args.json:
        doc: dict[str, Any] = {
            **envelope("check"),
            "ok": ok,
            "topology_nodes": list(topology.node_ids) if topology else None,
            "v1_memory_pressure": _v1_note(args),
            "configs": [_as_json(r, topology) for r in results],
        }
        print(json.dumps(doc, indent=2))
        return 0 if ok else 1
    for r in results:
        if r.problems:
            for problem in r.problems:
                print(problem, file=sys.stderr)
        else:
            print(summary(r, topology))
            from zoned.shared.zone import shared_warnings

            for warning in shared_warnings(r.decls) if r.decls else ():
                print(f"{r.config}: warning: {warning}", file=sys.stderr)
    if (note := _v1_note(args)) is not None:
        print(note)
    return 0 if ok else 1


def _v1_note(args: argparse.Namespace) -> str | None:
    """On a cgroup v1 host: the root's cpuset.memory_pressure_enabled and what opting in
    to it does (``zoned.backends.v1rootflag``); None elsewhere, or when the machine is not
    read (as for the topology: --no-topology, or no roots given and no live node directory)."""
    if args.no_topology or (
        args.sysfs_root is None and args.proc_root is None and not LIVE_NODES.is_dir()
    ):
        return None
    proc = args.proc_root or PROC_ROOT
    if not (proc / "self" / "mountinfo").exists():
        return None
    from zoned.backends.v1rootflag import check_note

    return check_note(proc)


def check_one(path: Path, topology: Topology | None) -> Result:
    """Load ``path`` (with drop-ins) and, given a topology, check its node references."""
    try:
        decls = load(path)
    except ConfigError as exc:
        return Result(path, None, list(exc.problems))
    problems = check_against_topology(decls, topology) if topology else []
    return Result(path, None if problems else decls, problems)


def _topology(args: argparse.Namespace) -> Topology | None:
    """The topology to check against, or None. Raises TopologyError if it cannot be read."""
    if args.no_topology:
        return None
    if args.sysfs_root is None and args.proc_root is None and not LIVE_NODES.is_dir():
        return None
    from zoned.kernel.topology import read_topology

    return read_topology(args.sysfs_root or SYS_ROOT, args.proc_root or PROC_ROOT)


def _total(amounts: list[Amount]) -> str:
    size = sum(a.value for a in amounts if a.unit is AmountUnit.BYTES)
    nodes = sum(a.value for a in amounts if a.unit is AmountUnit.NODES)
    parts = [format_size(size)] if size else []
    if nodes:
        parts.append(str(Amount.nodes(nodes)))
    return " + ".join(parts) or "0"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def summary(result: Result, topology: Topology | None) -> str:
    """``config/zoned.yaml: ok, 2 drop-ins, 4 containers (min …, max …), reserved nodes 0, …``."""
    d = result.decls
    assert d is not None
    host = d.host
    shared = (
        f"shared nodes {format_nodelist(host.shared_nodes)}"
        if host.shared_nodes
        else f"shared zone {_plural(host.shared_count, 'node')}"
    )
    reserved = format_nodelist(host.reserved_nodes) or "none"
    text = (
        f"{result.config}: ok, {_plural(len(d.files) - 1, 'drop-in')}, "
        f"{_plural(len(d.containers), 'container')} "
        f"(min {_total([c.min for c in d.containers])}, "
        f"max {_total([c.max for c in d.containers])}), "
        f"reserved nodes {reserved}, {shared}"
    )
    if d.templates:  # engine declarations hold no nodes until an engine starts a container
        names = ", ".join(t.name for t in d.templates)
        text += f", {_plural(len(d.templates), 'engine declaration')} ({names})"
    if topology:
        text += f"; nodes checked against the topology ({_plural(len(topology.nodes), 'node')})"
    return text


def _as_json(r: Result, topology: Topology | None) -> dict[str, Any]:
    d = r.decls
    return {
        "config": str(r.config),
        "ok": not r.problems,
        "summary": summary(r, topology) if d else None,
        "files": list(d.files) if d else [],
        "containers": [
            {
                "name": c.name,
                "min": c.min.as_json(),
                "max": c.max.as_json(),
                "priority": c.priority,
                "shared": c.shared,
                "cgroup": c.cgroup,
            }
            for c in (d.containers if d else ())
        ],
        "problems": [_located(p) for p in r.problems],
        "warnings": [_located(w) for w in _warnings(d)],
    }


def _warnings(d: Declarations | None) -> list[Problem]:
    """The shared zone's warnings (valid declarations only), with where each was written."""
    if d is None:
        return []
    from zoned.shared.zone import located_shared_warnings

    return located_shared_warnings(d)


def _located(p: Problem) -> dict[str, Any]:
    return {
        "file": p.where.file if p.where else None,
        "line": p.where.line if p.where else None,
        "column": p.where.column if p.where else None,
        "message": p.message,
        "text": str(p),
    }
