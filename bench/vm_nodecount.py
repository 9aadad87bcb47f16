"""The cost of more nodes on real kernels: page-fault-heavy allocation on 4, 8, 16 and 64
fake nodes, with the cpuset on the first pool node and on the last node.

    sudo .venv/bin/python bench/vm_nodecount.py [--numa 4,8,16,64] [--reps 3] [--no-docs]

One guest per node count (cgroup v2, 2 GiB; 64 nodes need 2304 MiB: see MEM)
runs ``bench/guest/nodecount.py``. Reports time per GiB faulted and the ratio to 4 nodes.
Prints the table and writes the section "Cost of more nodes (real kernel)" of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.vm_common import (
    Boot,
    GuestRun,
    machine,
    md_table,
    run_guest_script,
    today,
    write_section,
)

KEY = "vm_nodecount"
# numa=fake=64 on 2 GiB is refused (measured: "Not enough memory for each node. NUMA
# emulation disabled.": the holes below 1 MiB and the firmware's reservations leave less
# than 64 x 32 MiB). 2304 MiB gives 64 nodes of ~36 MiB.
MEM = {"64": "2304M"}
TITLE = "Cost of more nodes (real kernel)"


def ms_per_gib(run: GuestRun, label: str) -> tuple[float, float]:
    """(median, best run's median) ms per GiB faulted on ``label``'s node; the first map
    of each run is left out (it also faults in the child's code)."""
    chunk = run.data["chunk_mib"] / 1024
    per_run = []
    every: list[float] = []
    for r in run.data["runs"][label]:
        ms = [t / 1e6 / chunk for t in r["times_ns"][1:]]
        every += ms
        per_run.append(statistics.median(ms))
    return statistics.median(every), min(per_run)


def placed(run: GuestRun, label: str) -> str:
    """Where the first map's pages went, to show the cpuset held."""
    want = str(run.data["targets"][label])
    got: dict[str, Any] = run.data["runs"][label][0]["placed"]
    return "yes" if set(got) == {want} else f"no: {got}"


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--numa", default="4,8,16,64")
    ap.add_argument("--kernel", default="6.1")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-docs", action="store_true", help="print only")
    args = ap.parse_args(argv)
    runs: list[GuestRun] = []
    for n in args.numa.split(","):
        boot = Boot(kernel=args.kernel, numa=n, mem=MEM.get(n, "2G"), cgroup="v2")
        runs.append(
            run_guest_script(
                boot,
                "nodecount.py",
                ["--reps", str(args.reps)],
                timeout_s=900,
                name=f"bench-nc-{n}",
            )
        )
    labels = [list(r.data["targets"]) for r in runs]
    base_first = ms_per_gib(runs[0], labels[0][0])[0]
    base_last = ms_per_gib(runs[0], labels[0][1])[0]
    rows = []
    for run, (first, last) in zip(runs, labels, strict=True):
        f_med, f_best = ms_per_gib(run, first)
        l_med, l_best = ms_per_gib(run, last)
        sizes = run.data["node_mib"]
        rows.append(
            [
                run.data["nodes"],
                f"{statistics.median(sizes.values()):.0f}",
                f"{f_med:.0f} ({f_best:.0f})",
                f"{l_med:.0f} ({l_best:.0f})",
                f"{l_med / f_med:.2f}",
                f"**{f_med / base_first:.2f}**",
                f"**{l_med / base_last:.2f}**",
                f"{placed(run, first)} / {placed(run, last)}",
            ]
        )
    table = md_table(
        [
            "nodes",
            "node MiB (free, median)",
            "ms/GiB, mems = node 1 (best run)",
            "ms/GiB, mems = last node (best run)",
            "last / node 1",
            "node 1 vs 4 nodes",
            "last vs 4 nodes",
            "pages on the cpuset's node",
        ],
        rows,
    )
    print(table)
    d0 = runs[0].data
    head = (
        f"Measured {today()} by `bench/vm_nodecount.py`; {machine()}. Kernel "
        f"{d0['kernel']}, cgroup v2, numa=fake={args.numa.replace(',', '/')} on 2 GiB "
        '(64 nodes: on 2304 MiB, since numa=fake=64 on 2 GiB is refused: "Not enough memory '
        'for each node. NUMA emulation disabled."). '
        f"Workload: a child in a cpuset with one node maps {d0['chunk_mib']} MiB of private "
        "anonymous memory with 4 KiB pages (`MADV_NOHUGEPAGE`), writes one byte per page "
        "through a strided memoryview (a C loop, so page faults dominate: one fault, one "
        "page allocation and one page clear per 4 KiB), unmaps it, 32 times; "
        f"{args.reps} runs per node, alternating. ms per GiB faulted: median over all "
        "maps (the best run's median in brackets)."
    )
    if not args.no_docs:
        write_section(KEY, TITLE, "\n\n".join([head, table, INTERPRETATION]))


INTERPRETATION = """\
_Interpretation and the node-count recommendation: see below the table._"""


if __name__ == "__main__":
    main()
