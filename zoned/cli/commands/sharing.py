"""``zoned sharing``: which container maps pages that live on whose nodes.

    zoned sharing [--config F] [--json] [--promote]

From each container's processes' ``/proc/PID/numa_maps`` (zoned.accounting.sharing): for every
container, bytes it maps on its own nodes, on the shared zone (expected), on another
container's nodes (that container faulted them first and pays), or elsewhere.
``--promote`` moves the files mapped on other containers' nodes into the shared zone
(the shared-zone helper maps them and calls mbind(MPOL_MF_MOVE_ALL)), then reports what
moved and what stayed.

JSON, schema ``zoned/sharing/v1`` (bytes)::

    {"schema": "zoned/sharing/v1", "shared_nodes": [5], "own": {"web": 123, ...},
     "shares": [{"mapper": "batch", "owner": "web", "file": 67108864, "anon": 0,
                 "files": [["/data/x", 67108864]]}],
     "promoted": null | <zoned shared warm's JSON without its schema key>}
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from zoned.cli.commands._index import describe
from zoned.cli.commands._roots import add_root_args, roots
from zoned.cli.commands._zonemap import add_source_args, zone_source
from zoned.model.jsondoc import envelope
from zoned.model.sizes import format_size

if TYPE_CHECKING:  # the modules themselves are imported when the command runs (numpy)
    from zoned.accounting.sharing import SharingReport
    from zoned.shared.zone import WarmReport


DESCRIPTION = """\
Per pair of containers, how much of whose pages each one maps: pages on the shared
zone (expected), on its own nodes, or on another container's nodes (read from each
process's /proc/PID/numa_maps). --promote moves the files mapped on other containers'
nodes into the shared zone.
Reads the running daemon's configuration (or --config FILE, or the installed file),
the cgroups and /proc.

examples:
  zoned sharing
  zoned sharing --promote
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("sharing", **describe("sharing", DESCRIPTION))
    add_source_args(p)  # --config FILE, else the running daemon's, else the installed file
    p.add_argument(
        "--promote",
        action="store_true",
        help="move files mapped on other containers' nodes into the shared zone",
    )
    add_root_args(p, cgroup=True)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zoned.accounting.ownership import shared_nodes, targets
    from zoned.accounting.sharing import foreign_files, sharing
    from zoned.backends.select import readonly_backend
    from zoned.service.sdscope import localize_here
    from zoned.shared.zone import warm

    source = zone_source(args)
    if source.note:
        print(f"zoned {args.command}: {source.note}", file=sys.stderr)
    r = roots(args)
    decls = localize_here(source.decls, r.proc, r.cgroup)  # under systemd: the scope
    backend = readonly_backend(decls, cgroup_root=r.cgroup, sys_root=r.sys, proc_root=r.proc)
    promoted: WarmReport | None = None
    try:
        shared = (
            source.shared if source.shared is not None else shared_nodes(decls, backend.topology())
        )
        found, _missing = targets(backend, [c.name for c in decls.containers])
        report = sharing(found, shared, r.proc)
        if args.promote:
            files = foreign_files(report)
            if files:
                promoted = warm(backend, shared, files, move=True)
    finally:
        backend.close()
    if args.json:
        doc = as_json(report)
        doc["promoted"] = promoted.as_json() if promoted else None
        print(json.dumps(doc, indent=2))
    else:
        print(render(report))
        if promoted:
            print(render_promoted(promoted))
    return 0


def as_json(r: SharingReport) -> dict[str, Any]:
    return {
        **envelope("sharing"),
        "shared_nodes": sorted(r.shared_nodes),
        "own": r.own,
        "shares": [
            {
                "mapper": s.mapper,
                "owner": s.owner,
                "file": s.file,
                "anon": s.anon,
                "files": [list(f) for f in s.files],
            }
            for s in r.shares
        ],
    }


SHARED = "(shared zone)"  # zoned.accounting.sharing.SHARED


def _whose(owner: str) -> str:
    return (
        "the shared zone"
        if owner == SHARED
        else ("nodes no container owns" if owner.startswith("(") else f"{owner}'s nodes")
    )


def render(r: SharingReport) -> str:
    lines: list[str] = []
    for name, own in r.own.items():
        lines.append(f"{name}: maps {format_size(own)} on its own nodes")
        for s in (s for s in r.shares if s.mapper == name):
            files = ", ".join(f"{p} {format_size(b)}" for p, b in s.files[:3])
            more = f" (+{len(s.files) - 3} more)" if len(s.files) > 3 else ""
            kind = f"file {format_size(s.file)}" + (
                f", anon {format_size(s.anon)}" if s.anon else ""
            )
            pays = "" if s.owner.startswith("(") else f" — {s.owner} pays for them"
            lines.append(
                f"  {format_size(s.total)} on {_whose(s.owner)} ({kind}){pays}"
                + (f": {files}{more}" if files else "")
            )
    return "\n".join(lines) or "no container has processes"


def render_promoted(w: WarmReport) -> str:
    lines = [f"promoted into the shared zone (nodes {','.join(map(str, w.shared_nodes))}):"]
    for f in w.files:
        stayed = f.resident - f.on_shared
        lines.append(
            f"  {f.path}: {format_size(f.on_shared)} now on the shared zone, "
            f"{format_size(stayed)} stayed elsewhere" + (f" ({f.error})" if f.error else "")
        )
    return "\n".join(lines)
