"""Simulator speed: simulated seconds per real second, by size (``zoned simulate``'s path).

Each size is a generated scenario: C containers, each min one node and max three, on a pool
of 2C nodes of 64M (plus node 0, reserved), every container a seeded random walk of its
anon around 60 % of a node with peaks past it, so the engine lends and reclaims throughout.
The run is ``run_scenario`` (the real engine on the simulated host, then the report's
samples), timed on the process's CPU clock; the last column runs the same scenario in
``static-zones`` mode (no engine: the simulated host and the report alone).
Target (issue 17): ≥ 1,000x real time at 128 containers, and cost linear in containers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import runinfo
from zoned.backends.sim import load_scenario
from zoned.cli.commands.simulate import run_scenario

ROOT = Path(__file__).resolve().parent.parent


def scenario(containers: int, duration_s: float) -> str:
    lines = [
        f"name: speed-{containers}",
        f"duration_s: {duration_s:g}",
        f"topology: {{count: {2 * containers + 1}, size: 64M}}",
        "config:",
        "  host: {reserved_nodes: [0]}",
        "  policy: {cooldown_s: 10}",
        "  containers:",
    ]
    lines += [
        f"    c{i}: {{min: {{nodes: 1}}, max: {{nodes: 3}}, priority: {i % 3}}}"
        for i in range(containers)
    ]
    lines.append("workloads:")
    lines += [
        f"  c{i}: {{restart: true, phases: [{{walk: {{anon_mean: 40M, sd: 25M, seed: {i},"
        f" for_s: {duration_s:g}, every_s: 5, rho: 0.95}}}}]}}"
        for i in range(containers)
    ]
    return "\n".join(lines) + "\n"


def measure(containers: int, duration_s: float, tmp: Path, mode: str) -> tuple[float, int, int]:
    """(CPU seconds, decisions logged, OOM kills) of one run in ``mode``."""
    path = tmp / f"speed-{containers}.yaml"
    path.write_text(scenario(containers, duration_s))
    sc = load_scenario(path)
    t0 = time.process_time()
    run = run_scenario(sc, mode)
    return time.process_time() - t0, len(run.log), run.oom_kills


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--containers", default="4,16,64,128,256")
    ap.add_argument("--duration", type=float, default=600.0, help="simulated seconds per run")
    args = ap.parse_args(argv)
    print(runinfo.header() + chr(10))
    print(
        "| containers | nodes | simulated s | CPU s | x real time | CPU ms per container"
        " per simulated minute | decisions | OOM kills | the host alone (static-zones):"
        " x real time |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="zoned-simspeed-") as d:
        for c in (int(x) for x in args.containers.split(",")):
            cpu, decisions, kills = measure(c, args.duration, Path(d), "zoned")
            alone, _, _ = measure(c, args.duration, Path(d), "static-zones")
            per = cpu * 1000 / c / (args.duration / 60)
            print(
                f"| {c} | {2 * c + 1} | {args.duration:g} | {cpu:.2f} | {args.duration / cpu:,.0f}"
                f" | {per:.2f} | {decisions} | {kills} | {args.duration / alone:,.0f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
