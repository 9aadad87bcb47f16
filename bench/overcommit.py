"""Overcommit benchmark: one scenario in the four modes, side by side.

    python bench/overcommit.py [SCENARIO.yaml ...] [--out bench/results]

For each scenario (default: config/scenarios/overcommit.yaml and demo.yaml) runs
``zoned``, ``static-zones``, ``static-limits`` and ``no-isolation`` on the simulated host
and reports, per mode: OOM kills, "some" stall seconds, nodes moved, bytes migrated, and
the peak of the containers' summed usage against the pool (how far the host was
overcommitted in practice). Writes ``<out>/overcommit-<scenario>.md`` (a table) and
``.png`` (bars), and prints the table. Deterministic: the same inputs give the same table.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zoned.commands.simulate import MODES, SimRun, run_scenario  # noqa: E402
from zoned.sim import load_scenario  # noqa: E402
from zoned.sizes import format_size  # noqa: E402

DEFAULT = [
    ROOT / "config" / "scenarios" / "runaway.yaml",
    ROOT / "config" / "scenarios" / "overcommit.yaml",
    ROOT / "config" / "scenarios" / "demo.yaml",
]


@dataclass(frozen=True)
class Row:
    mode: str
    oom_kills: int
    kills_by: str  # "web 0, leak 12": who paid
    stall_s: float
    nodes_moved: int
    migrated: int
    declared_max: int  # sum of the containers' max (bytes)
    pool: int  # bytes of unreserved nodes


def measure(run: SimRun) -> Row:
    sc = run.scenario
    reserved = set(sc.decls.host.reserved_nodes)
    pool_nodes = [n for n in sc.nodes if n.id not in reserved and n.size > 0]
    pool = sum(n.size for n in pool_nodes)
    mean = pool // len(pool_nodes) if pool_nodes else 0
    declared = sum(
        c.max.value if c.max.unit.value == "bytes" else c.max.value * mean
        for c in sc.decls.containers
    )
    return Row(
        mode=run.mode,
        oom_kills=run.oom_kills,
        kills_by=", ".join(f"{r.name} {r.oom_kills}" for r in run.summary),
        stall_s=sum(r.stall_s or 0.0 for r in run.summary),
        nodes_moved=sum(r.nodes_gained for r in run.summary),
        migrated=sum(r.bytes_migrated for r in run.summary),
        declared_max=declared,
        pool=pool,
    )


def table(name: str, rows: list[Row]) -> str:
    r0 = rows[0]
    head = (
        f"## {name}: containers may grow to {format_size(r0.declared_max)} on a pool of "
        f"{format_size(r0.pool)} ({r0.declared_max / r0.pool:.1f}x overcommitted)\n\n"
        "| mode | OOM kills | by container | stall (s) | nodes moved | migrated |\n"
        "|---|---:|---|---:|---:|---:|\n"
    )
    body = "".join(
        f"| {r.mode} | {r.oom_kills} | {r.kills_by} | {r.stall_s:.1f} | {r.nodes_moved} | "
        f"{format_size(r.migrated)} |\n"
        for r in rows
    )
    return head + body


def bars(name: str, rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    modes = [r.mode for r in rows]
    a.bar(modes, [r.oom_kills for r in rows], color="#d62728")
    a.set_title("OOM kills (fewer is better)", fontsize=10)
    b.bar(modes, [r.stall_s for r in rows], color="#1f77b4")
    b.set_title('"some" memory stall, seconds (less is better)', fontsize=10)
    for ax in (a, b):
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle(f"{name}: the same workloads under each mode", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("scenarios", nargs="*", type=Path, default=DEFAULT)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.scenarios:
        sc = load_scenario(path)
        rows = [measure(run_scenario(sc, mode)) for mode in MODES]
        text = table(sc.name, rows)
        (args.out / f"overcommit-{sc.name}.md").write_text(text, encoding="utf-8")
        bars(sc.name, rows, args.out / f"overcommit-{sc.name}.png")
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
