"""``zoned usage``: each container's memory under the three ownership models.

    zoned usage [--config F] [--model zones|static|partial|all] [--sample N]
                [--rate PAGES_PER_S] [--json]

Models (see zoned.accounting.ownership): ``zones`` — bytes in use on the nodes it owns; ``static`` —
its memcg's charge (first touch); ``partial`` — unique pages its processes map, charged to
every container that maps them (pagemap PFNs: root only). ``--sample N`` keeps 1 PFN in
N (estimate and standard error shown); ``--rate`` bounds the pagemap walk.

JSON, schema ``zoned/usage/v1`` (bytes; null where a model was not measured)::

    {"schema": "zoned/usage/v1", "models": ["zones", "static", "partial"], "shared_nodes": [5],
     "shared_zone_used": 67108864, "missing": [],
     "containers": [{"name": "web", "nodes": [1, 2], "pids": 3, "zones": ...,
                     "static": ..., "partial": ..., "partial_stderr": 0}],
     "overlaps": [{"a": "batch", "b": "web", "bytes": 67108864}],
     "scan": {"sample": 1, "processes": 5, "entries": 123456, "present": 40000,
              "seconds": 0.05, "pages_per_s": 2469120, "slept": 0.0}}
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from zoned.cli.argtypes import bounded
from zoned.cli.commands._index import describe
from zoned.cli.commands._roots import add_root_args, roots
from zoned.cli.commands._zonemap import add_source_args, zone_source
from zoned.model.jsondoc import envelope
from zoned.model.nodelist import format_nodelist
from zoned.model.sizes import format_size

if TYPE_CHECKING:
    from zoned.accounting.ownership import UsageReport

# zoned.accounting.ownership.MODELS; not imported here: it pulls numpy in, and every zoned command
# imports every command module at start.
MODELS = ("zones", "static", "partial")
MAX_RATE = 1e9  # pagemap entries per second: about 400 times what one reader does unpaced


DESCRIPTION = """\
How much memory each declared container uses, counted three ways:
  zones    bytes in use on the nodes it owns (per-node counts from its cgroup)
  static   what its cgroup is charged (a page counts for whoever touched it first)
  partial  the distinct pages its processes map, each counted for every container
           that maps it (from /proc/PID/pagemap: root only)
and the pages two containers both map.
Reads the running daemon's configuration (or --config FILE, or the installed file),
the cgroups and /proc;
changes nothing. --sample N reads 1 page frame in N (an estimate, with its standard
error); --rate bounds the pagemap walk.

examples:
  zoned usage
  zoned usage --model zones --json
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("usage", **describe("usage", DESCRIPTION))
    add_source_args(p)  # --config FILE, else the running daemon's, else the installed file
    p.add_argument("--model", choices=(*MODELS, "all"), default="all")
    p.add_argument("--sample", type=int, default=1, metavar="N", help="keep 1 PFN in N")
    p.add_argument(
        "--rate", type=bounded("pages per second", most=MAX_RATE), default=None,
        metavar="PAGES_PER_S",
        help="at most this many pagemap entries per second",
    )  # fmt: skip
    add_root_args(p, cgroup=True)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zoned.accounting.ownership import measure, shared_nodes
    from zoned.backends.select import readonly_backend
    from zoned.kernel.pagemap import PagemapReader
    from zoned.service.sdscope import localize_here

    if args.sample < 1:
        raise SystemExit("zoned usage: --sample must be >= 1")
    source = zone_source(args)
    if source.note:
        print(f"zoned {args.command}: {source.note}", file=sys.stderr)
    r = roots(args)
    decls = localize_here(source.decls, r.proc, r.cgroup)  # under systemd: the scope
    models = MODELS if args.model == "all" else (args.model,)
    backend = readonly_backend(decls, cgroup_root=r.cgroup, sys_root=r.sys, proc_root=r.proc)
    try:
        shared = (
            source.shared if source.shared is not None else shared_nodes(decls, backend.topology())
        )
        reader = (
            PagemapReader(r.proc, sample=args.sample, rate_pages_per_s=args.rate)
            if "partial" in models
            else None
        )
        report = measure(
            backend, [c.name for c in decls.containers], models, shared=shared, reader=reader
        )
    finally:
        backend.close()
    if args.json:
        print(json.dumps(as_json(report, models), indent=2))
    else:
        print(render(report, models))
    return 0


def as_json(r: UsageReport, models: tuple[str, ...] | list[str]) -> dict[str, Any]:
    s = r.scan
    return {
        **envelope("usage"),
        "models": list(models),
        "shared_nodes": sorted(r.shared_nodes),
        "shared_zone_used": r.shared_zone_used,
        "missing": r.missing,
        "containers": [
            {
                "name": c.name,
                "nodes": sorted(c.nodes),
                "pids": c.pids,
                "zones": c.zones,
                "static": c.static,
                "partial": c.partial,
                "partial_stderr": c.partial_stderr,
            }
            for c in r.charges
        ],
        "overlaps": [{"a": a, "b": b, "bytes": n} for (a, b), n in sorted(r.overlaps.items())],
        "scan": {
            "sample": r.sample,
            "processes": s.processes,
            "entries": s.entries,
            "present": s.present,
            "seconds": round(s.seconds, 4),
            "pages_per_s": round(s.entries / s.seconds) if s.seconds > 0 else None,
            "slept": round(s.slept, 3),
        },
    }


def _cell(v: int | None, err: int | None = None) -> str:
    if v is None:
        return "-"
    return format_size(v) + (f" ±{format_size(err)}" if err else "")


def render(r: UsageReport, models: tuple[str, ...] | list[str]) -> str:
    head = ["container", "nodes", "pids", *models]
    rows = [head]
    for c in r.charges:
        cells = {
            "zones": _cell(c.zones),
            "static": _cell(c.static),
            "partial": _cell(c.partial, c.partial_stderr),
        }
        rows.append([c.name, format_nodelist(c.nodes), str(c.pids), *(cells[m] for m in models)])
    if r.shared_nodes:
        rows.append(
            ["(shared zone)", format_nodelist(r.shared_nodes), "-",
             *(format_size(r.shared_zone_used) if m == "zones" else "-" for m in models)]
        )  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]  # fmt: skip
    for (a, b), n in sorted(r.overlaps.items()):
        if n:
            lines.append(f"{a} and {b} both map {format_size(n)} (charged to each: partial)")
    for name in r.missing:
        lines.append(f"{name}: no cgroup on this host")
    s = r.scan
    if s.processes:
        rate = f", {s.entries / s.seconds:,.0f} pages/s" if s.seconds > 0 else ""
        lines.append(
            f"pagemap scan: {s.processes} processes, {s.entries:,} entries "
            f"({s.present:,} present) in {s.seconds:.2f} s{rate}"
            + (f", sample 1/{r.sample}" if r.sample > 1 else "")
        )
    return "\n".join(lines)
