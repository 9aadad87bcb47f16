"""``zoned simulate SCENARIO.yaml``: run the real engine on the simulated host.

The scenario (``zoned.backends.sim.scenario`` documents the format) gives the host, zoned's
declarations, each container's workload and any faults. The run is in virtual time, so
minutes take a fraction of a second, and the same file always gives the same result.

Modes, for comparison (the baselines run without the engine):

* ``zoned``          placement, then the engine moves nodes under pressure (default)
* ``static-zones``   placement only: each container keeps its initial nodes
* ``static-limits``  no cpusets; each container gets a memcg limit (memory.max) of its max
* ``no-isolation``   no cpusets, no limits: everyone shares every pool node

Prints a timeline of decisions with their reasons and a per-container summary (peak
usage, stall seconds, OOM kills, nodes gained and lost, bytes migrated); ``--json``
prints the same as JSON; ``--plot FILE.png`` draws node ownership and usage over time.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoned.backends.sim import Isolation, Scenario, SimBackend, load_scenario
from zoned.backends.sim import Sample as SimSample
from zoned.cli.commands._index import describe
from zoned.cli.report import (
    ContainerSummary,
    HostFacts,
    Sample,
    Usage,
    format_summary,
    format_timeline,
    summarize,
    to_json,
)
from zoned.config.decl import AmountUnit
from zoned.engine import Engine
from zoned.model.actions import RecordOom
from zoned.model.decisions import LogRecord
from zoned.model.host import EventKind
from zoned.model.jsondoc import envelope
from zoned.model.nodelist import format_nodelist
from zoned.model.sizes import format_size
from zoned.model.zonemap import SHARED
from zoned.policy.placement import place

MODES = ("zoned", "static-zones", "static-limits", "no-isolation")
_ISOLATION = {
    "zoned": Isolation.ZONES,
    "static-zones": Isolation.ZONES,
    "static-limits": Isolation.MEMCG,
    "no-isolation": Isolation.NONE,
}
_SUBTITLE = {
    "zoned": (
        "A container's pages can only come from the nodes it owns. zoned lends a free node when "
        "what a container cannot drop (anon)\ncrosses its tripwire, and when none is free "
        "reclaims one from an idle, low-priority container, evacuating it first."
    ),
    "static-zones": (
        "Baseline: each container keeps the nodes placement gave it (its min); nobody moves "
        "nodes,\nso a container that outgrows its zones is OOM-killed by the kernel."
    ),
    "static-limits": (
        "Baseline: no cpusets; each container has a fixed memory limit (memory.max) of its "
        "declared max,\nand everyone's pages mix on every pool node."
    ),
    "no-isolation": (
        "Baseline: no cpusets and no limits; every container allocates from every pool node "
        "until the machine is full."
    ),
}
# How often the engine re-reads levels when no event comes (a tripwire fires once).
TICK_S = 1.0


@dataclass
class SimRun:
    """One scenario run in one mode."""

    scenario: Scenario
    mode: str
    dry_run: bool
    backend: SimBackend
    engine: Engine | None
    log: list[LogRecord]
    samples: list[Sample]
    summary: tuple[ContainerSummary, ...]
    placement: Mapping[str, frozenset[int]]

    @property
    def oom_kills(self) -> int:
        return sum(r.oom_kills for r in self.summary)

    def kill_times(self, name: str) -> tuple[float, ...]:
        st = self.backend.stats().containers.get(name)
        return st.kill_times if st is not None else ()


def run_scenario(sc: Scenario, mode: str = "zoned", dry_run: bool = False) -> SimRun:
    """Run ``sc`` to its ``duration_s`` in ``mode``; raises PlacementError if it does not fit."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
    decls = sc.decls
    b = sc.backend(isolation=_ISOLATION[mode])
    zonemap = place(b.topology(), decls).zonemap
    placement = {c.name: zonemap.nodes_of(c.name) for c in decls.containers}
    engine: Engine | None = None
    if mode == "zoned":
        engine = Engine(b, decls, zonemap, dry_run=dry_run)
        if dry_run:  # the simulated world exists whatever the engine would do
            shared = zonemap.nodes_with(SHARED)
            for c in decls.containers:
                b.ensure(c, placement[c.name] | (shared if c.shared else frozenset()))
        engine.admit()
        engine.run(sc.duration_s, tick_s=TICK_S)
        log = engine.log
    else:
        for c in decls.containers:
            b.ensure(c, placement[c.name] if mode == "static-zones" else frozenset())
        b.run_until(sc.duration_s)
        log = _kills_as_records(b)
    stats = b.stats().containers
    facts = {
        name: HostFacts(s.peak_usage, s.peak_anon, s.stall_some_s, s.oom_kills, s.bytes_migrated)
        for name, s in stats.items()
    }
    names = [c.name for c in decls.containers]
    end_nodes = (
        {n: engine.zonemap.nodes_of(n) for n in names}
        if engine is not None
        else {name: st.nodes for name, st in b.existing().items()}
    )
    samples = samples_from_history(sc, b.history, mode)
    summary = summarize(names, facts, engine, end_nodes)
    return SimRun(sc, mode, dry_run, b, engine, log, samples, summary, placement)


def _kills_as_records(b: SimBackend) -> list[LogRecord]:
    """Without the engine nobody records OOM kills: take them from the host's events."""
    out = []
    for e in b.events:
        if e.kind is EventKind.OOM_KILL and e.container is not None:
            why = f"{e.container}: the kernel OOM-killed a process ({e.detail or 'oom_kill'})"
            a = RecordOom(e.container, why)
            out.append(
                LogRecord(
                    e.at,
                    "oom",
                    a.describe(),
                    why,
                    "recorded",
                    a,
                    code="noted",
                    container=e.container,
                )
            )
    return out


def samples_from_history(sc: Scenario, history: Sequence[SimSample], mode: str) -> list[Sample]:
    """The simulator's history as report samples: who owns each node, usage vs capacity."""
    sizes = {n.id: n.size for n in sc.nodes if n.size > 0}
    reserved = set(sc.decls.host.reserved_nodes)
    shared = set(sc.decls.host.shared_nodes)
    limits: dict[str, int] = {}
    if mode == "static-limits":
        # The simulator's rule for memory.max: the declared max, a node count times the
        # mean size of the unreserved nodes.
        pool = [size for n, size in sizes.items() if n not in reserved]
        mean = sum(pool) // len(pool) if pool else 0
        for decl in sc.decls.containers:
            m = decl.max
            limits[decl.name] = m.value if m.unit is AmountUnit.BYTES else m.value * mean
    out = []
    for h in history:
        # Each node's allowed containers, from one pass over the containers' node sets:
        # asking every container about every node was nodes x containers per sample.
        allowed: dict[int, str | None] = {}  # node → its one container; None: several
        for c, nodes in h.nodes.items():
            for n in nodes:
                allowed[n] = c if n not in allowed else None
        owners: dict[int, str] = {}
        for n in sizes:
            if n in shared:
                owners[n] = "shared"
            elif n in allowed:
                one = allowed[n]
                owners[n] = one if one is not None else "unconfined"
            else:
                owners[n] = "reserved" if n in reserved else "free"
        usage = {}
        for c, nodes in h.nodes.items():
            per = h.usage.get(c, {})
            cap = sum(sizes.get(n, 0) for n in nodes if n not in shared)
            if c in limits:
                cap = min(cap, limits[c])
            usage[c] = Usage(
                current=sum(u.total for u in per.values()),
                anon=sum(u.anon + u.other for u in per.values()),
                capacity=cap,
            )
        out.append(Sample(h.at, owners, usage))
    return out


# ---------------------------------------------------------------------------------------
# output


def describe_host(sc: Scenario) -> str:
    sizes = [n.size for n in sc.nodes if n.size > 0]
    same = len(set(sizes)) == 1
    nodes = (
        f"{len(sizes)} nodes of {format_size(sizes[0])}"
        if same and sizes
        else f"{len(sizes)} nodes ({', '.join(format_size(s) for s in sizes)})"
    )
    res = format_nodelist(sc.decls.host.reserved_nodes) or "none"
    return f"{nodes}, reserved {res}"


def text_report(run: SimRun, plot: Path | None, *, verbose: bool = False) -> str:
    sc = run.scenario
    lines = [
        f"scenario {sc.name}: {describe_host(sc)}; {sc.duration_s:g}s of virtual time; "
        f"mode {run.mode}" + (" (dry run: decisions only, nothing moved)" if run.dry_run else ""),
        "",
        "initial placement (each container's min):",
    ]
    for c in sc.decls.containers:
        lines.append(
            f"  {c.name:<12} {('node ' + format_nodelist(run.placement[c.name])) or '-':<12}"
            f" min {c.min}, max {c.max}, priority {c.priority}"
        )
    lines += ["", "timeline (time, decision, outcome; the reason below it):"]
    tl = format_timeline(run.log, verbose=verbose)
    lines.append(tl if tl else "  (no decisions)")
    lines += ["", "summary:", format_summary(run.summary)]
    if plot is not None:
        lines += ["", f"plot: {plot}"]
    return "\n".join(lines)


def json_report(run: SimRun, plot: Path | None) -> dict[str, Any]:
    sc = run.scenario
    return to_json(
        run.log,
        run.summary,
        {
            **envelope("simulate"),
            "scenario": sc.name,
            "mode": run.mode,
            "dry_run": run.dry_run,
            "duration_s": sc.duration_s,
            "nodes": [{"id": n.id, "size": n.size} for n in sc.nodes],
            "placement": {k: sorted(v) for k, v in run.placement.items()},
            "plot": str(plot) if plot is not None else None,
        },
    )


def draw(run: SimRun, path: str | Path) -> Path:
    from zoned.cli.plot import plot_run  # matplotlib is slow to import: only when asked

    sc = run.scenario
    title = (
        f"zoned simulate {sc.name} (mode {run.mode}): {describe_host(sc)}. "
        f"OOM kills: {run.oom_kills}"
    )
    return plot_run(
        run.samples,
        run.log,
        path,
        title=title,
        subtitle=_SUBTITLE[run.mode],
        captions={
            c.name: f"{c.name}: priority {c.priority}, min {c.min}, max {c.max}"
            for c in sc.decls.containers
        },
        containers=[c.name for c in sc.decls.containers],
        tripwire_pct=sc.decls.policy.tripwire_pct if run.mode == "zoned" else None,
    )


def _main(args: argparse.Namespace) -> int:
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    sc = load_scenario(args.scenario)
    run = run_scenario(sc, args.mode, args.dry_run)
    plot = draw(run, args.plot) if args.plot else None
    if args.json:
        json.dump(json_report(run, plot), sys.stdout, indent=2)
        print()
    else:
        print(text_report(run, plot, verbose=args.verbose))
    return 0


DESCRIPTION = """\
Run the real engine on a simulated host, in virtual time: minutes take a fraction of
a second, and the same file always gives the same result. The scenario file gives
the host, zoned's declarations, each container's workload and any faults (the files
in config/scenarios/ are examples).

Modes, for comparison (the baselines run without the engine):
  zoned          placement, then the engine moves nodes under pressure (default)
  static-zones   placement only: each container keeps its initial nodes
  static-limits  no cpusets; each container gets a memcg limit (memory.max) of its max
  no-isolation   no cpusets, no limits: everyone shares every pool node

Prints a timeline of decisions with their reasons and a per-container summary (peak
usage, stall seconds, OOM kills, nodes gained and lost, bytes migrated); --json prints
the same as JSON; --plot FILE.png draws node ownership and usage over time.

examples:
  zoned simulate config/scenarios/overcommit.yaml
  zoned simulate config/scenarios/burst.yaml --mode static-zones --json
"""


def register(sub: Any) -> None:
    p = sub.add_parser("simulate", **describe("simulate", DESCRIPTION))
    p.add_argument(
        "scenario", metavar="SCENARIO.yaml", help="scenario file (see config/scenarios/)"
    )
    p.add_argument("--json", action="store_true", help="print the run as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="draw node ownership and usage over time")
    p.add_argument("--dry-run", action="store_true", help="decide and log, move nothing")
    p.add_argument("--mode", choices=MODES, default="zoned", help="zoned (default) or a baseline")
    p.add_argument("-v", "--verbose", action="store_true", help="engine log on stderr; tripwires")
    p.set_defaults(func=_main)
