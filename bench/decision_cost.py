"""What one decision costs: ``policy.decide`` on synthetic snapshots, and a whole engine
step (snapshot + decide + apply) on the simulated host.

    python bench/decision_cost.py [--out bench/results] [--quick]

Hosts of 8, 64 and 1,024 nodes with 10, 100, 1,000 and 10,000 containers. Node 0 is
reserved; the pool is dealt round robin to the first ``min(C, pool)`` containers (min 1
node); the others are declared with ``min: 0`` and hold no node, as placement leaves them.
No node is free, so every need goes down the ladder to the donor search.

Two shapes of work per ``decide`` call:

* **event**: one tripwire event, one decision. One container (priority 10) is over its
  tripwire; every other is quiet at 30 % of its zones (lower priority, active recently,
  so no idle returns). This is the case the target is about.
* **storm**: half the containers over their tripwires at once (the first author's worst
  case); the cost per decision, and per needy container.

Prints tables of the median CPU microseconds per call (process time: the machine may be
shared) with the growth factor from the previous size (x10 containers), and writes
``<out>/decision-cost.md``.
Numbers only: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zoned.config.decl import Amount, ContainerDecl, Declarations  # noqa: E402
from zoned.model.sizes import MIB  # noqa: E402
from zoned.model.snapshot import ContainerView, NodeView, Snapshot  # noqa: E402
from zoned.model.zonemap import RESERVED, Assignment, Owner, ZoneMap  # noqa: E402
from zoned.policy.decide import PolicyState, decide  # noqa: E402

NODE = 256 * MIB
NOW = 1000.0
NODES = (8, 64, 1024)
CONTAINERS = (10, 100, 1000, 10000)

World = tuple[Snapshot, Declarations, ZoneMap, PolicyState]


def world(nodes: int, containers: int, storm: bool = False) -> World:
    """The synthetic host described in the module docstring. Deterministic."""
    pool = list(range(1, nodes))
    holders = min(containers, len(pool))
    owners: dict[int, list[int]] = {i: [] for i in range(containers)}
    amap = {0: Assignment(0, RESERVED, "reserved")}
    for k, n in enumerate(pool):
        c = k % holders
        owners[c].append(n)
        amap[n] = Assignment(n, Owner.of(f"c{c}"), "bench")
    decls = []
    views = {}
    last_need = {}
    for i in range(containers):
        mine = owners[i]
        name = f"c{i}"
        lo = Amount.nodes(1) if mine else Amount.bytes_(0)
        decls.append(ContainerDecl(name, lo, Amount.nodes(len(pool)), priority=i % 4))
        cap = NODE * len(mine)
        hot = i == 0 or (storm and i % 2 == 0)
        anon = int(cap * (0.9 if hot else 0.3))
        views[name] = ContainerView(
            name=name,
            nodes=frozenset(mine),
            current=anon,
            anon=anon,
            file=0,
            per_node=MappingProxyType({n: anon // len(mine) for n in mine}),
            tripwire=int(cap * 0.85) if mine else None,
            last_change=NOW - 100.0,
            tripped=hot and bool(mine),
        )
        last_need[name] = NOW - 100.0  # active recently: no idle returns in the way
    if not storm:
        decls[0] = ContainerDecl("c0", decls[0].min, decls[0].max, priority=10)
    snap = Snapshot(
        at=NOW,
        containers=MappingProxyType(views),
        nodes=MappingProxyType({n: NodeView(n, NODE, NODE // 4) for n in range(nodes)}),
    )
    state = PolicyState(started=0.0, last_need=MappingProxyType(last_need))
    return snap, Declarations(containers=tuple(decls)), ZoneMap(amap), state


def median_us(fn: Callable[[], object], budget_s: float = 0.5, most: int = 200) -> float:
    """Median CPU time of ``fn`` in µs (this process's, so that other work on a shared
    machine does not count), over as many calls as fit ``budget_s`` (at least 5)."""
    samples: list[float] = []
    spent = 0.0
    while len(samples) < 5 or (spent < budget_s and len(samples) < most):
        t0 = time.process_time()
        fn()
        dt = time.process_time() - t0
        samples.append(dt)
        spent += dt
    return statistics.median(samples) * 1e6


def time_decide(nodes: int, containers: int, storm: bool = False) -> tuple[float, int]:
    """(median µs per call, actions decided) for one size."""
    snap, decls, zm, state = world(nodes, containers, storm)
    d = decide(snap, decls, zm, state, NOW)  # warm up, and count
    return median_us(lambda: decide(snap, decls, zm, state, NOW)), len(d.actions)


def time_engine_step(nodes: int, containers: int) -> tuple[float, int]:
    """Median CPU µs of one ``Engine.step`` (snapshot from the backend, decide, start the
    actions) on a simulated host of ``nodes`` x 64M with ``containers`` quiet containers
    holding a node each at least (the simulator, like a cpuset, reads no nodes as every
    node, so ``containers`` < ``nodes`` here), one of them growing; the simulator's own
    time between steps is not counted."""
    from zoned.backends.sim import SimBackend, SimNode
    from zoned.backends.sim.workload import Hold, Ramp, WorkloadSpec
    from zoned.engine import Engine
    from zoned.policy.placement import place

    size = 64 * MIB
    sim_nodes = tuple(SimNode(i, size, 16 * MIB if i == 0 else 0) for i in range(nodes))
    pool = nodes - 1
    decls = Declarations(
        containers=tuple(
            ContainerDecl(
                f"c{i}",
                Amount.nodes(1) if i < pool else Amount.bytes_(0),
                Amount.nodes(pool),
                priority=10 if i == 0 else i % 4,
            )
            for i in range(containers)
        )
    )
    grow = WorkloadSpec((Ramp(over_s=20.0, anon=3 * size), Hold(1e6)))
    b = SimBackend(sim_nodes, workloads={"c0": grow}, reserved=(0,))
    zm = place(b.topology(), decls).zonemap
    e = Engine(b, decls, zm)
    e.admit()
    samples = []
    while b.now() < 30.0:
        events = b.wait(1.0)
        t0 = time.process_time()
        e.step(events)
        samples.append(time.process_time() - t0)
    return statistics.median(samples) * 1e6, len(samples)


def _growth(table: dict[tuple[int, int], float], n: int, c: int) -> str:
    prev = CONTAINERS[CONTAINERS.index(c) - 1] if c != CONTAINERS[0] else None
    if prev is None:
        return ""
    return f" ({table[n, c] / table[n, prev]:.1f}x)"


def decide_table(storm: bool) -> tuple[list[str], dict[tuple[int, int], float]]:
    head = "storm: half the containers over their tripwire" if storm else "event: one tripwire"
    lines = [
        f"### policy.decide, {head}: median CPU µs per call (growth for 10x containers)\n",
        "| containers | " + " | ".join(f"{n} nodes" for n in NODES) + " |",
        "|---:|" + "---:|" * len(NODES),
    ]
    table: dict[tuple[int, int], float] = {}
    for c in CONTAINERS:
        for n in NODES:
            table[n, c], _ = time_decide(n, c, storm)
        cells = [f"{table[n, c]:,.0f}{_growth(table, n, c)}" for n in NODES]
        lines.append(f"| {c:,} | " + " | ".join(cells) + " |")
    return lines, table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--no-engine", action="store_true", help="skip the engine step timing")
    args = p.parse_args(argv)
    lines: list[str] = []
    ev_lines, ev = decide_table(storm=False)
    lines += ev_lines
    target = ev[64, 1000]
    lines += [
        "",
        f"Target (< 1 ms per event at 1,000 containers x 64 nodes): {target:,.0f} µs, "
        + ("met" if target < 1000 else "missed"),
        "",
    ]
    st_lines, _ = decide_table(storm=True)
    lines += st_lines
    if not args.no_engine:
        lines += [
            "",
            "### Engine.step on the simulated host (64M nodes, one container growing): "
            "median CPU µs per step\n",
            "| containers | nodes | µs per step | steps |",
            "|---:|---:|---:|---:|",
        ]
        logging.getLogger("zoned").setLevel(logging.ERROR)
        for n, c in ((16, 10), (128, 100), (1024, 1000)):
            us, k = time_engine_step(n, c)
            lines.append(f"| {c:,} | {n:,} | {us:,.0f} | {k} |")
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decision-cost.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
