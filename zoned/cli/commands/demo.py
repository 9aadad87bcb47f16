"""``zoned demo``: the whole overcommit ladder on a simulated host, in a few seconds.

Runs the scenario bundled with zoned (``zoned/data/scenarios/demo.yaml``; the same file is
``config/scenarios/demo.yaml`` in the source tree) with the real engine: a container
growing, a free node lent, nodes reclaimed from an idle container (evacuated first), an
OOM avoided, idle nodes given back. Then runs the same workloads with static zones to
show what would have happened without zoned, and draws the run.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from zoned.backends.sim import Scenario, loads_scenario
from zoned.cli.commands._index import describe
from zoned.cli.commands.simulate import SimRun, draw, json_report, run_scenario, text_report
from zoned.model.jsondoc import envelope

SCENARIO = "demo.yaml"
DEFAULT_PLOT = Path("out") / "demo.png"


def bundled_scenario() -> Scenario:
    """The demo scenario shipped inside the package (works from an installed wheel)."""
    ref = resources.files("zoned") / "data" / "scenarios" / SCENARIO
    return loads_scenario(ref.read_text(encoding="utf-8"), f"zoned/data/scenarios/{SCENARIO}")


def comparison(with_zoned: SimRun, static: SimRun) -> str:
    """Two sentences: OOM kills with static zones, and with zoned."""

    def kills(run: SimRun) -> str:
        parts = []
        for row in run.summary:
            if row.oom_kills:
                at = ", ".join(f"{t:.1f}s" for t in run.kill_times(row.name))
                times = "time" if row.oom_kills == 1 else "times"
                parts.append(f"{row.name} {row.oom_kills} {times} (at {at})")
        return "; ".join(parts) if parts else "none"

    return (
        f"without zoned (static zones, same workloads), OOM kills: {kills(static)}\n"
        f"with zoned, OOM kills: {kills(with_zoned)}"
    )


def _main(args: argparse.Namespace) -> int:
    sc = bundled_scenario()
    run = run_scenario(sc, "zoned")
    static = run_scenario(sc, "static-zones")
    plot = draw(run, args.plot)
    if args.json:
        out = {**json_report(run, plot), **envelope("demo")}
        out["static_zones_summary"] = json_report(static, None)["summary"]
        json.dump(out, sys.stdout, indent=2)
        print()
        return 0
    print(
        "zoned demo: three containers share five 512M fake-NUMA nodes, and may grow to eight.\n"
        "batch grows into the free nodes, cache fills its zone with page cache (not grown),\n"
        "then web needs memory when no node is free: zoned takes nodes back from idle batch.\n"
    )
    print(text_report(run, None))
    print()
    print(comparison(run, static))
    print(f"\nplot: {plot}")
    return 0


DESCRIPTION = """\
The whole overcommit ladder on a simulated host, in a few seconds. Runs the scenario
bundled with zoned (zoned/data/scenarios/demo.yaml; config/scenarios/demo.yaml in the
source tree) with the real engine: a container growing, a free node lent, nodes
reclaimed from an idle container (evacuated first), an OOM avoided, idle nodes given
back. Then runs the same workloads with static zones to show what would have happened
without zoned, and draws the run. Reads nothing from this machine.

examples:
  zoned demo
  zoned demo --plot /tmp/demo.png
"""


def register(sub: Any) -> None:
    p = sub.add_parser("demo", **describe("demo", DESCRIPTION))
    p.add_argument(
        "--plot",
        metavar="FILE.png",
        default=str(DEFAULT_PLOT),
        help=f"where to draw the run (default {DEFAULT_PLOT})",
    )
    p.add_argument("--json", action="store_true", help="print the run as JSON")
    p.set_defaults(func=_main)
