"""What one decision costs: ``policy.decide`` on synthetic snapshots, and a whole engine
step (snapshot + decide + apply) on the simulated host.

    python bench/decision_cost.py [--out bench/results]

``decide`` is timed over hosts of 8 to 256 nodes with 4 to 64 containers, in the worst
case for the ladder: every container short of memory, no node free, so each one searches
every other container for a donor. Prints a table (median microseconds per call) and
writes ``<out>/decision-cost.md``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from types import MappingProxyType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zoned.commands.demo import bundled_scenario  # noqa: E402
from zoned.decl import Amount, ContainerDecl, Declarations  # noqa: E402
from zoned.engine import Engine  # noqa: E402
from zoned.model import RESERVED, Assignment, Owner, ZoneMap  # noqa: E402
from zoned.placement import place  # noqa: E402
from zoned.policy import PolicyState, decide  # noqa: E402
from zoned.sizes import MIB  # noqa: E402
from zoned.snapshot import ContainerView, NodeView, Snapshot  # noqa: E402

NODE = 256 * MIB


def world(nodes: int, containers: int) -> tuple[Snapshot, Declarations, ZoneMap]:
    """Every pool node owned, round robin; half the containers over their tripwire."""
    decls = Declarations(
        containers=tuple(
            ContainerDecl(f"c{i}", Amount.nodes(1), Amount.nodes(nodes), priority=i % 4)
            for i in range(containers)
        )
    )
    owners: dict[int, list[int]] = {i: [] for i in range(containers)}
    amap = {0: Assignment(0, RESERVED, "reserved")}
    for n in range(1, nodes):
        c = (n - 1) % containers
        owners[c].append(n)
        amap[n] = Assignment(n, Owner.of(f"c{c}"), "bench")
    views = {}
    for i, mine in owners.items():
        cap = NODE * len(mine)
        anon = int(cap * 0.9) if i % 2 == 0 else int(cap * 0.1)
        views[f"c{i}"] = ContainerView(
            name=f"c{i}",
            nodes=frozenset(mine),
            current=anon,
            anon=anon,
            file=0,
            per_node=MappingProxyType({n: anon // max(1, len(mine)) for n in mine}),
            tripwire=int(cap * 0.85),
            tripped=i % 2 == 0,
        )
    snap = Snapshot(
        at=1000.0,
        containers=MappingProxyType(views),
        nodes=MappingProxyType({n: NodeView(n, NODE, NODE // 4) for n in range(nodes)}),
    )
    return snap, decls, ZoneMap(amap)


def time_decide(nodes: int, containers: int, repeat: int = 50) -> float:
    snap, decls, zm = world(nodes, containers)
    state = PolicyState(started=0.0)
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        decide(snap, decls, zm, state, 1000.0)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6


def time_engine_step() -> tuple[float, int]:
    """Median microseconds of wall time per engine step over the demo scenario (the
    simulator's own time between steps is not counted)."""
    sc = bundled_scenario()
    b = sc.backend()
    e = Engine(b, sc.decls, place(b.topology(), sc.decls).zonemap)
    e.admit()
    samples = []
    while b.now() < sc.duration_s:
        events = b.wait(1.0)
        t0 = time.perf_counter()
        e.step(events)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6, len(samples)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args(argv)
    lines = [
        "## policy.decide, worst case (half the containers short, no node free)\n",
        "| nodes | containers | median µs per decision |",
        "|---:|---:|---:|",
    ]
    for nodes, containers in ((8, 4), (16, 8), (64, 16), (128, 32), (256, 64)):
        lines.append(f"| {nodes} | {containers} | {time_decide(nodes, containers):.0f} |")
    us, n = time_engine_step()
    lines += [
        "",
        f"## engine step on the simulated host (demo scenario, {n} steps)\n",
        f"median {us:.0f} µs per step (snapshot, decide, start actions)",
    ]
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decision-cost.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
