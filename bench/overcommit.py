"""Overcommit benchmark: the same scenarios under four policies on the simulated host.

    python bench/overcommit.py [SCENARIO.yaml ...] [--out bench/results] [--png DIR]

Policies, each a fresh simulated host running the same workloads:

* ``zoned``          placement, then the engine lends and reclaims whole nodes;
* ``static-zones``   each container keeps the nodes placement gave it (its ``min``), as
                     the kubelet's Memory Manager pins a pod's NUMA nodes at admission;
* ``static-limits``  no zones; each container a fixed share of the pool (memory.max =
                     pool x its max / the sum of all max: memcg limits without overcommit);
* ``no-isolation``   no zones, no limits: everyone allocates from every pool node.

(``zoned simulate --mode static-limits`` sets memory.max to each declared ``max``, which
on an overcommitted host is no partition at all; its row is printed as
``limits=max`` for reference, and it is not one of the target's baselines.)

For each scenario it first states the target's precondition, measured on the
no-isolation run (the demand as the workloads make it, nothing holding them back):

* ``sum(max) / pool``: how far the declarations overcommit the pool (>= 1.5 wanted);
* the peak concurrent demand, in bytes (anon, which cannot be dropped, summed over the
  containers at each second) and in whole nodes: at each second, the sum over containers
  of ``max(min, ceil(anon / (node x tripwire_pct)))`` (the nodes each needs to stay
  under its tripwire), against the pool's node count. Zones are whole nodes: demand that
  fits the pool only in bytes does not fit it in zones.

Then per policy: OOM kills (and who paid), "some" stall seconds, nodes moved, bytes
migrated, memory in use (mean and peak of the containers' summed usage) and a sparkline
of it over the run. And a verdict: where the precondition holds, the target is zoned 0 OOM
kills, both static baselines some, and zoned's total stall at most 1.10x no-isolation's.

Writes ``<out>/overcommit.md`` and prints it; ``--png DIR`` also draws one small bar
chart per scenario. Deterministic: the same inputs give the same numbers.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zoned.backends.sim import Isolation, Sample, Scenario, load_scenario  # noqa: E402
from zoned.baseline import run_baseline  # noqa: E402
from zoned.cli.commands.simulate import run_scenario  # noqa: E402
from zoned.config.decl import AmountUnit, ContainerDecl  # noqa: E402
from zoned.model.sizes import format_size  # noqa: E402

SCENARIOS = ROOT / "config" / "scenarios"
DEFAULT = [
    SCENARIOS / "staggered.yaml",
    SCENARIOS / "burst.yaml",
    SCENARIOS / "walks.yaml",
    SCENARIOS / "overcommit.yaml",
    SCENARIOS / "runaway.yaml",
    SCENARIOS / "demo.yaml",
]
POLICIES = ("zoned", "static-zones", "static-limits", "no-isolation")
STALL_RATIO = 1.10
SPARK = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class Row:
    """One scenario under one policy."""

    policy: str
    oom_kills: int
    kills_by: Mapping[str, int]
    stall_s: float
    nodes_moved: int
    migrated: int
    in_use: tuple[int, ...]  # the containers' summed usage, one value per sample


@dataclass(frozen=True)
class Precondition:
    """The target's precondition for one scenario, measured on the no-isolation run."""

    pool: int  # bytes of the pool's nodes
    pool_nodes: int
    node_size: int  # mean pool node size
    declared_max: int  # sum of max, bytes (a node count times node_size)
    peak_anon: int  # peak over time of the summed anon
    peak_nodes: int  # peak over time of the whole nodes needed under the tripwire
    baseline_kills: int  # OOM kills with no isolation: demand that does not fit at all

    @property
    def ratio(self) -> float:
        return self.declared_max / self.pool

    @property
    def fits_bytes(self) -> bool:
        return self.peak_anon <= self.pool and self.baseline_kills == 0

    @property
    def fits_nodes(self) -> bool:
        return self.peak_nodes <= self.pool_nodes and self.baseline_kills == 0

    @property
    def holds(self) -> bool:
        return self.ratio >= 1.5 and self.fits_nodes


def pool_of(sc: Scenario) -> tuple[int, int, int]:
    """(bytes, node count, mean node size) of the nodes that are neither reserved nor
    shared."""
    off = set(sc.decls.host.reserved_nodes) | set(sc.decls.host.shared_nodes)
    sizes = [n.size for n in sc.nodes if n.id not in off and n.size > 0]
    return sum(sizes), len(sizes), sum(sizes) // len(sizes) if sizes else 0


def amount_bytes(c: ContainerDecl, which: str, node_size: int) -> int:
    a = c.max if which == "max" else c.min
    return a.value if a.unit is AmountUnit.BYTES else a.value * node_size


def min_nodes(c: ContainerDecl, node_size: int, headroom_pct: float) -> int:
    if c.min.unit is AmountUnit.NODES:
        return c.min.value
    return math.ceil(c.min.value / (node_size * (100 - headroom_pct) / 100))


def anon_of(s: Sample, name: str) -> int:
    return sum(u.anon + u.other for u in s.usage.get(name, {}).values())


def precondition(sc: Scenario, history: Sequence[Sample], kills: int) -> Precondition:
    pool, count, node = pool_of(sc)
    trip = node * sc.decls.policy.tripwire_pct / 100.0
    head = sc.decls.host.headroom_pct
    cs = sc.decls.containers
    peak_anon = peak_nodes = 0
    for s in history:
        peak_anon = max(peak_anon, sum(anon_of(s, c.name) for c in cs))
        need = sum(max(min_nodes(c, node, head), math.ceil(anon_of(s, c.name) / trip)) for c in cs)
        peak_nodes = max(peak_nodes, need)
    declared = sum(amount_bytes(c, "max", node) for c in cs)
    return Precondition(pool, count, node, declared, peak_anon, peak_nodes, kills)


def shares(sc: Scenario) -> dict[str, int]:
    """static-limits: the pool split in proportion to each container's max."""
    pool, _, node = pool_of(sc)
    maxes = {c.name: amount_bytes(c, "max", node) for c in sc.decls.containers}
    total = sum(maxes.values())
    return {name: pool * m // total for name, m in maxes.items()}


def in_use(history: Sequence[Sample]) -> tuple[int, ...]:
    return tuple(sum(s.total(name) for name in s.usage) for s in history)


def run(sc: Scenario, policy: str) -> Row:
    if policy == "zoned":
        r = run_scenario(sc, "zoned")
        return Row(
            policy,
            r.oom_kills,
            {s.name: s.oom_kills for s in r.summary},
            sum(s.stall_s or 0.0 for s in r.summary),
            sum(s.nodes_gained for s in r.summary),
            sum(s.bytes_migrated for s in r.summary),
            in_use(r.backend.history),
        )
    if policy == "static-zones":
        b = run_baseline(sc, Isolation.ZONES)
    elif policy == "static-limits":
        b = run_baseline(sc, Isolation.MEMCG, memcg_limits=shares(sc))
    elif policy == "limits=max":
        b = run_baseline(sc, Isolation.MEMCG)
    else:
        b = run_baseline(sc, Isolation.NONE)
    st = b.stats.containers
    return Row(
        policy,
        b.stats.oom_kills,
        {c.name: st[c.name].oom_kills for c in sc.decls.containers if c.name in st},
        b.stats.stall_some_s,
        0,
        b.stats.bytes_migrated,
        in_use(b.history),
    )


def sparkline(values: Sequence[int], top: int, width: int = 24) -> str:
    """``values`` in ``width`` buckets (each its mean), scaled to ``top``."""
    if not values or top <= 0:
        return ""
    out = []
    for i in range(width):
        chunk = values[i * len(values) // width : (i + 1) * len(values) // width] or [0]
        level = sum(chunk) / len(chunk) / top
        out.append(SPARK[min(len(SPARK) - 1, max(0, round(level * (len(SPARK) - 1))))])
    return "".join(out)


@dataclass(frozen=True)
class Verdict:
    met: bool | None  # None: the precondition does not hold, no target
    words: str


def verdict(pre: Precondition, rows: Mapping[str, Row]) -> Verdict:
    z, sz, sl, ni = (rows[p] for p in POLICIES)
    allowed = STALL_RATIO * ni.stall_s
    checks = [
        (z.oom_kills == 0, f"zoned {z.oom_kills} OOM kills (0 wanted)"),
        (sz.oom_kills > 0, f"static-zones {sz.oom_kills} kills (some wanted)"),
        (sl.oom_kills > 0, f"static-limits {sl.oom_kills} kills (some wanted)"),
        (
            z.stall_s <= allowed + 1e-9,
            f"zoned stall {z.stall_s:.2f}s vs {allowed:.2f}s allowed "
            f"({STALL_RATIO:.2f} x no-isolation {ni.stall_s:.2f}s; "
            f"{z.stall_s - ni.stall_s:+.2f}s)",
        ),
    ]
    missed = [w for ok, w in checks if not ok]
    if not pre.holds:
        why = []
        if pre.ratio < 1.5:
            why.append(f"sum(max)/pool {pre.ratio:.2f} < 1.5")
        if not pre.fits_nodes:
            why.append(
                f"peak demand {pre.peak_nodes} whole nodes > pool {pre.pool_nodes}"
                + (f", {pre.baseline_kills} kills without isolation" if pre.baseline_kills else "")
            )
        return Verdict(None, "precondition not met (" + "; ".join(why) + "): no target")
    if not missed:
        return Verdict(True, "target met: " + "; ".join(w for _, w in checks))
    return Verdict(False, "target missed: " + "; ".join(missed))


def report(sc: Scenario, pre: Precondition, rows: Sequence[Row], v: Verdict) -> str:
    top = max(max(r.in_use, default=0) for r in rows) or 1
    lines = [
        f"### {sc.name}\n",
        f"sum(max) {format_size(pre.declared_max)} / pool {format_size(pre.pool)} "
        f"({pre.pool_nodes} nodes of {format_size(pre.node_size)}) = **{pre.ratio:.2f}x**; "
        f"peak concurrent anon {format_size(pre.peak_anon)} "
        f"({'fits' if pre.fits_bytes else 'does not fit'} in bytes); peak demand in whole "
        f"nodes under the tripwire {pre.peak_nodes} of {pre.pool_nodes} "
        f"({'fits' if pre.fits_nodes else 'does not fit'}).\n",
        "| policy | OOM kills | by container | stall (s) | nodes moved | migrated "
        "| in use mean / peak | in use over time |",
        "|---|---:|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        mean = sum(r.in_use) // len(r.in_use) if r.in_use else 0
        by = ", ".join(f"{k} {n}" for k, n in r.kills_by.items() if n) or "-"
        lines.append(
            f"| {r.policy} | {r.oom_kills} | {by} | {r.stall_s:.2f} | {r.nodes_moved} | "
            f"{format_size(r.migrated)} | {format_size(mean)} / "
            f"{format_size(max(r.in_use, default=0))} | `{sparkline(r.in_use, top)}` |"
        )
    mark = {True: "**met**", False: "**missed**", None: "n/a"}[v.met]
    lines += ["", f"Target: {mark} — {v.words}", ""]
    return "\n".join(lines)


def bars(name: str, rows: Sequence[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(7, 2.4))
    names = [r.policy for r in rows]
    a.bar(names, [r.oom_kills for r in rows], color="#d62728")
    a.set_title("OOM kills", fontsize=9)
    b.bar(names, [r.stall_s for r in rows], color="#1f77b4")
    b.set_title('"some" stall (s)', fontsize=9)
    for ax in (a, b):
        ax.tick_params(axis="x", labelsize=7, rotation=15)
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle(name, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("scenarios", nargs="*", type=Path, default=DEFAULT)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--png", type=Path, help="also draw a bar chart per scenario here")
    args = p.parse_args(argv)
    parts: list[str] = []
    summary = [
        "| scenario | sum(max)/pool | demand in whole nodes | OOM kills: zoned / static "
        "zones / static limits / none | stall s: zoned / none | target |",
        "|---|---:|---|---|---|---|",
    ]
    for path in args.scenarios:
        sc = load_scenario(path)
        rows = {pol: run(sc, pol) for pol in (*POLICIES, "limits=max")}
        ni = run_baseline(sc, Isolation.NONE)
        pre = precondition(sc, ni.history, ni.stats.oom_kills)
        v = verdict(pre, rows)
        parts.append(report(sc, pre, list(rows.values()), v))
        mark = {True: "met", False: "missed", None: "n/a (precondition)"}[v.met]
        kills = " / ".join(str(rows[pol].oom_kills) for pol in POLICIES)
        summary.append(
            f"| {sc.name} | {pre.ratio:.2f} | {pre.peak_nodes} of {pre.pool_nodes} "
            f"({'fits' if pre.fits_nodes else 'does not fit'}) | {kills} | "
            f"{rows['zoned'].stall_s:.2f} / {rows['no-isolation'].stall_s:.2f} | {mark} |"
        )
        if args.png is not None:
            args.png.mkdir(parents=True, exist_ok=True)
            bars(sc.name, list(rows.values()), args.png / f"overcommit-{sc.name}.png")
        print(parts[-1], flush=True)
    text = "\n".join(summary) + "\n\n" + "\n".join(parts)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "overcommit.md").write_text(text, encoding="utf-8")
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
