"""Overcommit benchmark: the same scenarios under five policies on the simulated host.

    python bench/overcommit.py [SCENARIO.yaml ...] [--set idle_return_s=120 ...] [--seeds 5]
        [--out bench/results] [--png DIR] [--docs [KEY] [--brief]]

Policies, each a fresh simulated host running the same workloads:

* ``zoned``            placement, then the engine lends and reclaims whole nodes;
* ``static-dealt``     static zones with the whole pool dealt out at start (each
                       container its ``min``, then every free node to the container
                       furthest below its share of the pool by ``max``: a kubelet-style
                       static partition that leaves no node idle; ``zoned.baseline``);
* ``static-min``       static zones as placement gives them (each its ``min``, the rest of
                       the pool idle), as the kubelet's Memory Manager pins a pod's nodes at
                       admission; kept for reference;
* ``static-limits``    no zones; each container a fixed share of the pool (memory.max =
                       pool x its max / the sum of all max: memcg limits without overcommit);
* ``no-isolation``     no zones, no limits: everyone allocates from every pool node.

(``limits=max``, memory.max = each declared ``max``, which on an overcommitted host
partitions nothing, is printed for reference.)

The policy is zoned's **shipped defaults**: the scenarios set none of the engine's knobs,
and where one does (demo), or ``--set`` overrides one, every non-default is printed next
to the figures. The simulator's model, the same for every policy, is the bench's own:

* the engine's reaction: each engine step's writes land after a delay drawn (seeded) from
  a log-normal with the measured tripwire → write p50 / p99 (``REACTION``: the end-to-end
  "kernel event → write issued" of docs/benchmarks.md, "Tripwire to action", 6.1 under
  TCG), standing for the step's reads, decision and write;
* restarts back off: a killed workload restarts after its ``restart_delay_s`` (1 s unless
  the scenario says otherwise), doubling per kill in a row up to ``BACKOFF_MAX_S``, so kill
  counts are not crash-loop counts. Kills are reported both as containers killed (at least
  once) and as kill events.

For each scenario it first states the target's precondition, measured on the
no-isolation run: ``sum(max) / pool`` (>= 1.5 wanted) and the peak concurrent demand in
bytes and in whole nodes (at each second, the sum over containers of ``max(min,
ceil(anon / (node x tripwire_pct)))``), against the pool's node count.

Then per policy: containers killed and kill events (and who paid), "some" stall seconds
(total and the worst container's), nodes moved, bytes migrated, memory in use and a
sparkline of it. zoned's stall is also given per lend (its total over the nodes it moved).
zoned also runs under ``--seeds`` reaction seeds (default 5): the summary gives the
spread, and the verdict takes zoned's worst run.
The verdict, where the precondition holds: zoned kills no container, both fair static
baselines (dealt zones, limits) kill some, and zoned's stall stays within an absolute
budget: ``STALL_PER_LEND_S`` per lend and ``STALL_PER_CONTAINER_S`` per container over the
run. Where it does not hold, the bench says whether zoned lost to no isolation, and why.

Prints the run's commit, machine, load and date, then everything; writes
``<out>/overcommit.md``; ``--docs [KEY]`` puts the same text in docs/benchmarks.md between
the ``KEY`` markers (default ``overcommit-output``; ``--brief``: the summary table only,
for before/after comparisons); ``--png DIR`` draws one bar chart per scenario.
Deterministic: the same inputs give the same numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import os
import platform
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zoned.backends.sim import Isolation, Sample, Scenario, load_scenario  # noqa: E402
from zoned.baseline import dealt_layout, run_baseline  # noqa: E402
from zoned.cli.commands.simulate import run_scenario  # noqa: E402
from zoned.config.decl import AmountUnit, ContainerDecl, PolicyDecl  # noqa: E402
from zoned.model.sizes import format_size  # noqa: E402

SCENARIOS = ROOT / "config" / "scenarios"
DOCS = ROOT / "docs" / "benchmarks.md"
DEFAULT = [
    SCENARIOS / "staggered.yaml",
    SCENARIOS / "burst.yaml",
    SCENARIOS / "walks.yaml",
    SCENARIOS / "overcommit.yaml",
    SCENARIOS / "runaway.yaml",
    SCENARIOS / "demo.yaml",
]
POLICIES = ("zoned", "static-dealt", "static-min", "static-limits", "no-isolation")
REFERENCE = ("limits=max",)
# Measured tripwire → write, end to end (kernel event → cpuset.mems write issued), ms p50 /
# p99: docs/benchmarks.md "Tripwire to action (real kernel)", 6.1.0-56-amd64 under TCG.
REACTION = (41.7, 72.5)
REACTION_SEED = 1
BACKOFF_MAX_S = 60.0
STALL_PER_LEND_S = 0.10  # about the reaction's p99: a lend waits for the engine, no more
STALL_PER_CONTAINER_S = 1.0  # over the whole run
SPARK = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class Row:
    """One scenario under one policy."""

    policy: str
    kill_events: int
    kills_by: Mapping[str, int]
    stall_s: float
    stall_by: Mapping[str, float]
    nodes_moved: int
    migrated: int
    in_use: tuple[int, ...]  # the containers' summed usage, one value per sample

    @property
    def killed(self) -> int:
        """Containers killed at least once."""
        return sum(1 for n in self.kills_by.values() if n)

    @property
    def worst_stall(self) -> tuple[str, float]:
        if not self.stall_by:
            return ("-", 0.0)
        name = max(self.stall_by, key=lambda k: self.stall_by[k])
        return (name, self.stall_by[name])

    @property
    def per_lend(self) -> float | None:
        return self.stall_s / self.nodes_moved if self.nodes_moved else None


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


def with_model(sc: Scenario) -> Scenario:
    """``sc`` under the bench's simulator model: the reaction delay and restart backoff."""
    knobs = dataclasses.replace(
        sc.knobs,
        reaction_p50_ms=REACTION[0],
        reaction_p99_ms=REACTION[1],
        reaction_seed=REACTION_SEED,
    )
    workloads = {
        name: dataclasses.replace(w, restart_max_s=max(BACKOFF_MAX_S, w.restart_delay_s))
        if w.restart
        else w
        for name, w in sc.workloads.items()
    }
    return dataclasses.replace(sc, knobs=knobs, workloads=workloads)


def with_seed(sc: Scenario, seed: int) -> Scenario:
    return dataclasses.replace(sc, knobs=dataclasses.replace(sc.knobs, reaction_seed=seed))


def with_policy(sc: Scenario, overrides: Mapping[str, float]) -> Scenario:
    if not overrides:
        return sc
    policy = dataclasses.replace(sc.decls.policy, **overrides)  # type: ignore[arg-type]
    return dataclasses.replace(sc, decls=dataclasses.replace(sc.decls, policy=policy))


def non_defaults(sc: Scenario) -> str:
    """The engine knobs ``sc`` runs with that are not the shipped defaults, or ``-``."""
    shipped = PolicyDecl()
    out = []
    for f in dataclasses.fields(PolicyDecl):
        v, d = getattr(sc.decls.policy, f.name), getattr(shipped, f.name)
        if v != d:
            out.append(f"{f.name} {v:g}" if isinstance(v, float) else f"{f.name} {v}")
    return ", ".join(out) or "-"


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
            {s.name: s.stall_s or 0.0 for s in r.summary},
            sum(s.nodes_gained for s in r.summary),
            sum(s.bytes_migrated for s in r.summary),
            in_use(r.backend.history),
        )
    if policy == "static-dealt":
        b = run_baseline(sc, Isolation.ZONES, layout=dealt_layout(sc))
    elif policy == "static-min":
        b = run_baseline(sc, Isolation.ZONES)
    elif policy == "static-limits":
        b = run_baseline(sc, Isolation.MEMCG, memcg_limits=shares(sc))
    elif policy == "limits=max":
        b = run_baseline(sc, Isolation.MEMCG)
    else:
        b = run_baseline(sc, Isolation.NONE)
    st = b.stats.containers
    names = [c.name for c in sc.decls.containers if c.name in st]
    return Row(
        policy,
        b.stats.oom_kills,
        {n: st[n].oom_kills for n in names},
        b.stats.stall_some_s,
        {n: st[n].stall_some_s for n in names},
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
    lost: bool = False  # zoned killed more containers than no isolation


def verdict(pre: Precondition, rows: Mapping[str, Row], reseeded: Sequence[Row] = ()) -> Verdict:
    """The target's verdict; zoned is judged on its worst run over ``rows["zoned"]`` and
    the same scenario under other reaction seeds (``reseeded``)."""
    z, dealt, _, lim, ni = (rows[p] for p in POLICIES)
    runs = [z, *reseeded]
    worst, worst_s = max((r.worst_stall for r in runs), key=lambda w: w[1])
    per_lend = max(r.per_lend or 0.0 for r in runs)
    killed = max(r.killed for r in runs)
    seeds = f" (worst of {len(runs)} reaction seeds)" if reseeded else ""
    checks = [
        (killed == 0, f"zoned killed {killed} containers{seeds} (0 wanted)"),
        (dealt.killed > 0, f"static-dealt killed {dealt.killed} (some wanted)"),
        (lim.killed > 0, f"static-limits killed {lim.killed} (some wanted)"),
        (
            per_lend <= STALL_PER_LEND_S + 1e-9,
            f"zoned stall {per_lend:.3f} s per lend{seeds} (budget {STALL_PER_LEND_S:.2f} s)",
        ),
        (
            worst_s <= STALL_PER_CONTAINER_S + 1e-9,
            f"worst container {worst} {worst_s:.2f} s{seeds} "
            f"(budget {STALL_PER_CONTAINER_S:.2f} s)",
        ),
    ]
    lost = killed > ni.killed or max(r.kill_events for r in runs) > ni.kill_events
    if not pre.holds:
        why = []
        if pre.ratio < 1.5:
            why.append(f"sum(max)/pool {pre.ratio:.2f} < 1.5")
        if not pre.fits_nodes:
            why.append(
                f"peak demand {pre.peak_nodes} whole nodes > pool {pre.pool_nodes}"
                + (f", {pre.baseline_kills} kills without isolation" if pre.baseline_kills else "")
            )
        words = "precondition not met (" + "; ".join(why) + "): no target"
        if lost:
            words += (
                f". **zoned loses to no isolation**: containers killed {z.killed} "
                f"({z.kill_events} kill events) against {ni.killed} ({ni.kill_events})"
            )
            if pre.fits_bytes and not pre.fits_nodes:
                words += (
                    f": the peak demand fits the pool in bytes "
                    f"({format_size(pre.peak_anon)} of {format_size(pre.pool)}) but not in "
                    f"whole nodes under the tripwires ({pre.peak_nodes} of {pre.pool_nodes}); "
                    "without isolation the containers share the slack of every node, with "
                    "zones a container whose zones are full waits for a whole node that no "
                    "one can spare"
                )
        return Verdict(None, words, lost)
    missed = [w for ok, w in checks if not ok]
    if not missed:
        return Verdict(True, "target met: " + "; ".join(w for _, w in checks), lost)
    return Verdict(False, "target missed: " + "; ".join(missed), lost)


def kills_cell(r: Row) -> str:
    return f"{r.killed} ({r.kill_events})"


def report(sc: Scenario, pre: Precondition, rows: Sequence[Row], v: Verdict) -> str:
    top = max(max(r.in_use, default=0) for r in rows) or 1
    lines = [
        f"### {sc.name}\n",
        f"sum(max) {format_size(pre.declared_max)} / pool {format_size(pre.pool)} "
        f"({pre.pool_nodes} nodes of {format_size(pre.node_size)}) = **{pre.ratio:.2f}x**; "
        f"peak concurrent anon {format_size(pre.peak_anon)} "
        f"({'fits' if pre.fits_bytes else 'does not fit'} in bytes); peak demand in whole "
        f"nodes under the tripwire {pre.peak_nodes} of {pre.pool_nodes} "
        f"({'fits' if pre.fits_nodes else 'does not fit'}). Engine knobs not at the "
        f"shipped default: {non_defaults(sc)}.\n",
        "| policy | containers killed (kill events) | by container | stall s: total / worst "
        "container | nodes moved | stall per lend | migrated | in use mean / peak "
        "| in use over time |",
        "|---|---:|---|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        mean = sum(r.in_use) // len(r.in_use) if r.in_use else 0
        by = ", ".join(f"{k} {n}" for k, n in r.kills_by.items() if n) or "-"
        name, worst = r.worst_stall
        per = f"{r.per_lend:.3f} s" if r.per_lend is not None else "-"
        lines.append(
            f"| {r.policy} | {kills_cell(r)} | {by} | {r.stall_s:.2f} / {worst:.2f} "
            f"({name}) | {r.nodes_moved} | {per} | {format_size(r.migrated)} | "
            f"{format_size(mean)} / {format_size(max(r.in_use, default=0))} | "
            f"`{sparkline(r.in_use, top)}` |"
        )
    mark = {True: "**met**", False: "**missed**", None: "n/a"}[v.met]
    lines += ["", f"Target: {mark} — {v.words}", ""]
    return "\n".join(lines)


def bars(name: str, rows: Sequence[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(7.5, 2.4))
    names = [r.policy for r in rows]
    a.bar(names, [r.killed for r in rows], color="#d62728")
    a.set_title("containers killed", fontsize=9)
    b.bar(names, [r.stall_s for r in rows], color="#1f77b4")
    b.set_title('"some" stall (s)', fontsize=9)
    for ax in (a, b):
        ax.tick_params(axis="x", labelsize=7, rotation=20)
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle(name, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def provenance(load_start: float) -> str:
    """Commit, machine, load and date, as the bench sees them."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def git(*args: str) -> str:
        try:
            out = subprocess.run(
                ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
            )
        except OSError:
            return ""
        return out.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = (
        " (with uncommitted changes)"
        if git("status", "--porcelain", "--", "zoned", "bench", "config")
        else ""
    )
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"Run by `bench/overcommit.py` on commit {commit}{dirty}, {when}; {model}, "
        f"{os.cpu_count()} cores, kernel {platform.release()}, Python "
        f"{platform.python_version()}; 1-min load average {load_start:.2f} at the start, "
        f"{os.getloadavg()[0]:.2f} at the end (the numbers do not depend on the machine: "
        "virtual time)."
    )


def model_line(overrides: Mapping[str, float], seeds: int) -> str:
    shipped = PolicyDecl()
    knobs = ", ".join(
        f"{k} {getattr(shipped, k):g}" for k in ("cooldown_s", "idle_return_s", "tripwire_pct")
    )
    over = ", ".join(f"{k} {v:g}" for k, v in overrides.items())
    return (
        f"Simulator model: each engine step's writes land after a seeded log-normal delay, "
        f"p50 {REACTION[0]} ms / p99 {REACTION[1]} ms (seed {REACTION_SEED} in the "
        f"per-scenario tables; zoned also under seeds {REACTION_SEED + 1}-"
        f"{REACTION_SEED + seeds - 1}, the verdict on its worst); killed "
        f"workloads restart after their restart_delay_s doubling to {BACKOFF_MAX_S:g} s. "
        f"Engine: shipped defaults ({knobs}, ...)"
        + (f"; **overridden for every scenario by --set: {over}**" if over else "")
        + f". Stall budget for zoned: {STALL_PER_LEND_S:.2f} s per lend, "
        f"{STALL_PER_CONTAINER_S:.2f} s per container over the run."
    )


def write_docs(text: str, key: str, path: Path = DOCS) -> None:
    """Replace the text between the ``key`` markers of docs/benchmarks.md."""
    begin, end = f"<!-- BEGIN {key} -->", f"<!-- END {key} -->"
    doc = path.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(doc):
        raise SystemExit(f"{path}: no {begin} ... {end} markers")
    doc = pattern.sub(lambda _m: f"{begin}\n{text.strip()}\n{end}", doc, count=1)
    path.write_text(doc, encoding="utf-8")
    print(f"wrote the overcommit output to {path} ({key})")


def parse_set(items: Sequence[str]) -> dict[str, float]:
    known = {f.name for f in dataclasses.fields(PolicyDecl)}
    out: dict[str, float] = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in known or not value:
            raise SystemExit(f"--set {item}: expected NAME=NUMBER, NAME one of policy's knobs")
        out[key] = float(value)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("scenarios", nargs="*", type=Path, default=DEFAULT)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KNOB=VALUE",
        help="override an engine knob (policy:) in every scenario",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=5,
        help="run zoned under this many reaction seeds; the verdict takes the worst",
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--png", type=Path, help="also draw a bar chart per scenario here")
    p.add_argument(
        "--docs",
        nargs="?",
        const="overcommit-output",
        metavar="KEY",
        help="write the output into docs/benchmarks.md between the KEY markers "
        "(default overcommit-output)",
    )
    p.add_argument("--brief", action="store_true", help="with --docs: the summary table only")
    args = p.parse_args(argv)
    overrides = parse_set(args.set)
    load_start = os.getloadavg()[0]
    parts: list[str] = []
    summary = [
        "| scenario | engine non-defaults | sum(max)/pool | demand in whole nodes | "
        "containers killed (kill events): zoned / static dealt / static min / static "
        "limits / none | zoned stall s: total / per lend / worst container | zoned over "
        f"{args.seeds} reaction seeds: containers killed / stall per lend | none stall s "
        "| target |",
        "|---|---|---:|---|---|---|---|---:|---|",
    ]
    for path in args.scenarios:
        sc = with_policy(with_model(load_scenario(path)), overrides)
        rows = {pol: run(sc, pol) for pol in (*POLICIES, *REFERENCE)}
        reseeded = [
            run(with_seed(sc, seed), "zoned")
            for seed in range(REACTION_SEED + 1, REACTION_SEED + args.seeds)
        ]
        ni = run_baseline(sc, Isolation.NONE)
        pre = precondition(sc, ni.history, ni.stats.oom_kills)
        v = verdict(pre, rows, reseeded)
        parts.append(report(sc, pre, list(rows.values()), v))
        mark = {True: "met", False: "missed", None: "n/a (precondition)"}[v.met]
        if v.lost:
            mark += "; **zoned loses**"
        kills = " / ".join(kills_cell(rows[pol]) for pol in POLICIES)
        z = rows["zoned"]
        name, worst = z.worst_stall
        per = f"{z.per_lend:.3f}" if z.per_lend is not None else "-"
        runs = [z, *reseeded]
        lends = [r.per_lend or 0.0 for r in runs]
        spread = (
            f"{min(r.killed for r in runs)}-{max(r.killed for r in runs)} / "
            f"{min(lends):.3f}-{max(lends):.3f}"
        )
        summary.append(
            f"| {sc.name} | {non_defaults(sc)} | {pre.ratio:.2f} | {pre.peak_nodes} of "
            f"{pre.pool_nodes} ({'fits' if pre.fits_nodes else 'does not fit'}) | {kills} | "
            f"{z.stall_s:.2f} / {per} / {worst:.2f} ({name}) | {spread} | "
            f"{rows['no-isolation'].stall_s:.2f} | {mark} |"
        )
        if args.png is not None:
            args.png.mkdir(parents=True, exist_ok=True)
            bars(sc.name, list(rows.values()), args.png / f"overcommit-{sc.name}.png")
        print(parts[-1], flush=True)
    head = provenance(load_start) + "\n\n" + model_line(overrides, args.seeds)
    text = head + "\n\n" + "\n".join(summary) + "\n\n" + "\n".join(parts)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "overcommit.md").write_text(text, encoding="utf-8")
    print(head + "\n\n" + "\n".join(summary))
    if args.docs:
        brief = head + "\n\n" + "\n".join(summary)
        write_docs(brief if args.brief else text, args.docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
