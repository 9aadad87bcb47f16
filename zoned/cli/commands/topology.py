"""``zoned topology``: the machine's nodes, fake-NUMA state, warnings and a boot parameter.

JSON (``--json``), schema ``zoned/topology/v1``; sizes in bytes, keys always present::

    {
      "schema": "zoned/topology/v1",
      "nodes": [{"id": 0, "mem_total": 220909568, "mem_free": 115306496,
                 "file_pages": 62922752, "has_memory": true, "cpus": [0, 1],
                 "distances": [10, 10, ...]}, ...],
      "total_bytes": 2064629760,          # sum of the nodes' mem_total
      "fake_numa": "8" | null,            # argument of numa=fake= on the command line
      "numa_balancing": false | true | null,   # null: no such sysctl
      "warnings": ["...", ...],
      "recommendation": null | {"param": "numa=fake=8", "nodes": 8,
                                "node_bytes": 268435456, "basis_bytes": 2147483648,
                                "reasons": ["...", ...]},
      "capabilities": {...}               # zoned.kernel.capabilities.to_doc
    }

``recommendation`` is given when the machine has at most one node with memory (zoned
cannot work without fake NUMA) or when there are declarations to size it for: ``--config``,
else the installed ``/etc/zoned/zoned.yaml`` when it exists (the text says which file was
read; a missing installed file is fine, one that does not load is noted, not fatal). The
text also prints the boot-loader steps for the recommended ``numa=fake=``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zoned.cli.capsview import render_capabilities
from zoned.cli.commands._index import describe
from zoned.cli.commands._roots import add_root_args, roots
from zoned.config.decl import Amount
from zoned.config.paths import DEFAULT_PATH
from zoned.errors import ConfigError, Problem
from zoned.kernel.capabilities import live_writer, probe
from zoned.kernel.capabilities import to_doc as caps_doc
from zoned.kernel.topology import machine_memory, read_topology
from zoned.model.jsondoc import envelope
from zoned.model.nodelist import format_nodelist
from zoned.model.sizes import format_size
from zoned.model.zonemap import Topology
from zoned.policy.fakenuma import FakeNumaPlan, boot_steps, plan_fake_numa, warnings

#: Read when no --config is given and it exists (tests point it elsewhere).
INSTALLED = DEFAULT_PATH


DESCRIPTION = """\
Show this machine's NUMA nodes (sizes from /sys/devices/system/node/nodeN/meminfo),
the numa=fake= boot argument (from /proc/cmdline), kernel.numa_balancing and
warnings. Without fake NUMA, print the numa=fake= boot parameter to use, sized for
--config's containers when given. Reads only; changes nothing.

examples:
  zoned topology
  zoned topology --config /etc/zoned/zoned.yaml
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("topology", **describe("topology", DESCRIPTION))
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_root_args(p)
    p.add_argument(
        "--config", type=Path, metavar="FILE", help="declarations to size a numa=fake= for"
    )  # default: INSTALLED when it exists (not in the help text: another change owns it)
    p.set_defaults(func=run)


def _containers(config: Path) -> list[tuple[Amount, Amount]]:
    # Lazy: zoned.config pulls in YAML parsing, which plain `topology` does not need.
    try:
        from zoned.config.load import load
    except ModuleNotFoundError as exc:
        if exc.name not in ("zoned.config", "zoned.config.load"):
            raise
        raise ConfigError([Problem(None, "--config: this build has no zoned.config")]) from exc
    decl = load(config)
    return [(c.min, c.max) for c in decl.containers]


def _declared(config: Path | None) -> tuple[list[tuple[Amount, Amount]] | None, str]:
    """The containers' (min, max) to size for (None: no declarations) and a line saying
    where they came from. An explicit ``config`` must load; the installed one may be
    absent or broken (noted: ``topology`` is a first step and must still answer)."""
    if config is not None:
        containers = _containers(config)
        return containers, f"containers: {len(containers)} declared in {config}"
    if not INSTALLED.is_file():
        return None, f"containers: none read (no {INSTALLED}; --config FILE sizes for one)"
    try:
        containers = _containers(INSTALLED)
    except ConfigError as exc:
        n = len(exc.problems)
        return None, (
            f"containers: none read: {INSTALLED} has {n} problem{'s' if n != 1 else ''} "
            f"(zoned check {INSTALLED} lists them)"
        )
    return containers, f"containers: {len(containers)} declared in {INSTALLED}"


def run(args: argparse.Namespace) -> int:
    r = roots(args)
    topo = read_topology(r.sys, r.proc)
    warns = warnings(topo)
    single = len(topo.memory_node_ids) <= 1
    containers, source = _declared(args.config)
    plan: FakeNumaPlan | None = None
    basis = 0
    if single or containers is not None:
        basis = machine_memory(topo, r.proc)
        plan = plan_fake_numa(basis, containers or [])
    # The kernel's interfaces and zoned's path for each job (zoned.cli.capsview).
    caps = probe(r, live_writer(r))
    if args.json:
        doc = to_json(topo, warns, plan, basis)
        doc["capabilities"] = caps_doc(caps)
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render(topo, warns, plan, basis, single, source=source))
        sys.stdout.write(render_capabilities(caps))
    return 0


def to_json(
    topo: Topology, warns: Sequence[str], plan: FakeNumaPlan | None, basis: int
) -> dict[str, Any]:
    """The documented ``--json`` structure (see the module docstring)."""
    return {
        **envelope("topology"),
        "nodes": [
            {
                "id": n.id,
                "mem_total": n.mem_total,
                "mem_free": n.mem_free,
                "file_pages": n.file_pages,
                "has_memory": n.has_memory,
                "cpus": list(n.cpus),
                "distances": list(n.distances),
            }
            for n in topo.nodes
        ],
        "total_bytes": sum(n.mem_total for n in topo.nodes),
        "fake_numa": topo.fake_numa,
        "numa_balancing": topo.numa_balancing,
        "warnings": list(warns),
        "recommendation": None
        if plan is None
        else {
            "param": plan.param,
            "nodes": plan.nodes,
            "node_bytes": plan.node_bytes,
            "basis_bytes": basis,
            "reasons": list(plan.reasons),
        },
    }


def compact_distances(row: Sequence[int]) -> str:
    """``10 10 10 20`` as ``10x3 20``: runs of one value collapse to ``value x count``."""
    parts: list[str] = []
    i = 0
    while i < len(row):
        j = i
        while j + 1 < len(row) and row[j + 1] == row[i]:
            j += 1
        count = j - i + 1
        parts.append(f"{row[i]}x{count}" if count > 1 else str(row[i]))
        i = j + 1
    return " ".join(parts)


def _table(rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [
            cell.rjust(widths[c]) if c in right else cell.ljust(widths[c])
            for c, cell in enumerate(r)
        ]
        out.append("  ".join(cells).rstrip())
    return out


def render(
    topo: Topology,
    warns: Sequence[str],
    plan: FakeNumaPlan | None,
    basis: int,
    single: bool,
    *,
    source: str = "",
) -> str:
    """The human table and summary lines; ``source`` says which declarations were read."""
    rows = [["node", "total", "free", "file", "cpus", "distance"]]
    for n in topo.nodes:
        rows.append(
            [
                str(n.id),
                format_size(n.mem_total),
                format_size(n.mem_free),
                format_size(n.file_pages),
                format_nodelist(n.cpus) or "-",
                compact_distances(n.distances),
            ]
        )
    rows.append(
        [
            "all",
            format_size(sum(n.mem_total for n in topo.nodes)),
            format_size(sum(n.mem_free for n in topo.nodes)),
            format_size(sum(n.file_pages for n in topo.nodes)),
            "",
            "",
        ]
    )
    lines = _table(rows, right={0, 1, 2, 3})
    nodes_word = f"{len(topo.nodes)} node" + ("" if len(topo.nodes) == 1 else "s")
    if topo.fake_numa is not None:
        lines.append(f"fake NUMA: numa=fake={topo.fake_numa} ({nodes_word})")
    else:
        lines.append(f"fake NUMA: not on the kernel command line ({nodes_word})")
    balancing = {None: "unknown (no kernel.numa_balancing)", True: "on", False: "off"}
    lines.append(f"numa_balancing: {balancing[topo.numa_balancing]}")
    if warns:
        lines.append("warnings:")
        lines.extend(f"  - {w}" for w in warns)
    if source:
        lines.append(source)
    if plan is not None:
        if single:
            lines.append(
                "zoned needs fake NUMA: boot this kernel with "
                f"{plan.param} (memory: {format_size(basis)})"
            )
        else:
            lines.append(
                f"recommended for the declared containers: {plan.param} "
                f"(memory: {format_size(basis)})"
            )
        lines.extend(f"  - {r}" for r in plan.reasons)
        if plan.param != f"numa=fake={topo.fake_numa}":
            lines.append(f"to boot with {plan.param}:")
            lines.extend(f"  - {step}" for step in boot_steps(plan.param, topo.fake_numa))
    return "\n".join(lines) + "\n"
