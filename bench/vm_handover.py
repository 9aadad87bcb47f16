"""Node hand-over on real kernels: evacuating a node holding N MiB by a ``cpuset.mems``
write, as a ratio of migration throughput to a plain memcpy of the same bytes.

    sudo .venv/bin/python bench/vm_handover.py [--boots 6.1-v2,6.12-v2,6.1-v1]
        [--sizes 32,64,128,192] [--reps 3] [--no-docs]

One guest per boot (``numa=fake=8`` on 2 GiB, ~256 MiB nodes) runs
``bench/guest/handover.py``. The figure is the ratio (TCG inflates absolute times); the
target is >= 0.5. Prints the table and writes the section "Node hand-over (real kernel)"
of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
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

KEY = "vm_handover"
TITLE = "Node hand-over (real kernel)"
TARGET = 0.5
GUEST = Path(__file__).resolve().parent / "guest" / "handover.py"
MIB = 1 << 20


def _mibps(nbytes: float, seconds: float) -> float:
    return nbytes / MIB / seconds if seconds > 0 else float("nan")


def anon_rows(run: GuestRun) -> list[list[object]]:
    d = run.data
    where = f"{d['kernel']} {d['cgroup']}"
    rows: list[list[object]] = []
    for r in d["anon"]:
        size = r["size_mib"]
        moves: list[dict[str, Any]] = r["moves"]
        med = statistics.median(m["s"] for m in moves)
        moved = statistics.median(m["moved"] for m in moves)
        left = max(m["left"] for m in moves)
        mig = _mibps(moved, med)
        # Each write has its own memcpy timed just before it (older results: one per size).
        cpys = [m.get("memcpy_s", d["memcpy_s"][str(size)]) for m in moves]
        cpy = _mibps(size * MIB, statistics.median(cpys))
        ratio = statistics.median(
            _mibps(m["moved"], m["s"]) / _mibps(size * MIB, c)
            for m, c in zip(moves, cpys, strict=True)
        )
        verdict = "met" if ratio >= TARGET else f"missed ({ratio / TARGET:.0%} of target)"
        rows.append(
            [
                where,
                size,
                f"THP ({r['thp_mib']:.0f} MiB huge)" if r["thp"] else "4 KiB",
                f"{med * 1000:.0f}",
                f"{moved / MIB:.1f}",
                f"{left / MIB:.1f}",
                f"{mig:.0f}",
                f"{cpy:.0f}",
                f"**{ratio:.3f}**",
                verdict,
            ]
        )
    return rows


def file_rows(run: GuestRun) -> list[list[object]]:
    d = run.data
    rows: list[list[object]] = []
    for f in d["files"]:
        kind = "tmpfs file, mapped" if f["kind"] == "file-mapped" else "tmpfs file, not mapped"
        rows.append(
            [
                f"{d['kernel']} {d['cgroup']}",
                kind,
                f["size_mib"],
                f"{f['s'] * 1000:.0f}",
                f"{f['moved'] / MIB:.1f}",
                f"{f['left'] / MIB:.1f}",
            ]
        )
    return rows


def calibration_rows(runs: Sequence[GuestRun]) -> list[list[object]]:
    """memcpy vs 4 KiB page-fault MiB/s in each guest and natively on this host: how much
    more TCG slows per-page kernel work than a bulk copy."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cal.json"
        subprocess.run(
            [sys.executable, str(GUEST), "--calibrate-only", "--out", str(out)], check=True
        )
        native = json.loads(out.read_text())
    found = [
        (f"{r.data['kernel']} {r.data['cgroup']} (TCG guest)", r.data.get("calibration"))
        for r in runs
    ]
    rows: list[list[object]] = []
    for where, cal in [*found, ("host, native", native)]:
        if not cal:
            continue
        ratio = cal["fault_mibps"] / cal["memcpy_mibps"]
        rows.append(
            [where, f"{cal['memcpy_mibps']:.0f}", f"{cal['fault_mibps']:.0f}", f"{ratio:.3f}"]
        )
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--boots", default="6.1-v2,6.12-v2,6.1-v1")
    ap.add_argument("--sizes", default="32,64,128,192")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-docs", action="store_true", help="print only")
    args = ap.parse_args(argv)

    runs: list[GuestRun] = []
    for spec in args.boots.split(","):
        kernel, cgroup = spec.split("-")
        assert cgroup in ("v1", "v2")
        boot = Boot(kernel=kernel, numa="8", mem="2G", cgroup="v1" if cgroup == "v1" else "v2")
        runs.append(
            run_guest_script(
                boot,
                "handover.py",
                ["--sizes", args.sizes, "--reps", str(args.reps)],
                timeout_s=900,
                name=f"bench-handover-{spec}",
            )
        )
    anon = md_table(
        [
            "kernel, cgroup",
            "MiB",
            "pages",
            "write ms (median)",
            "MiB moved",
            "MiB left",
            "migrate MiB/s",
            "memcpy MiB/s",
            "ratio",
            f"target >= {TARGET}",
        ],
        [row for run in runs for row in anon_rows(run)],
    )
    frows = [row for run in runs for row in file_rows(run)]
    files = md_table(
        ["kernel, cgroup", "page cache", "MiB", "write ms", "MiB moved", "MiB left"], frows
    )
    cal = md_table(
        ["where", "memcpy MiB/s", "4 KiB fault MiB/s", "fault / memcpy"], calibration_rows(runs)
    )
    print(anon)
    print()
    print(files)
    print()
    print(cal)
    d0 = runs[0].data
    head = (
        f"Measured {today()} by `bench/vm_handover.py`; {machine()}. Topology: numa=fake=8 on "
        f"2 GiB (~256 MiB nodes); the node pair with the most free memory (here "
        f"{d0['nodes'][0]} and {d0['nodes'][1]}); guest THP setting `{d0['thp']}`. "
        f"Each size: a child maps and touches N MiB of private anonymous memory in a cpuset "
        f"on one node, then `cpuset.mems` is written to the other node {args.reps} times "
        "(there and back); the write blocks until migration is done. v1 uses "
        "`cpuset.memory_migrate=1`. Moved/left bytes from `/proc/PID/numa_maps` (the "
        "interpreter's own heap moves too). The memcpy is glibc's `memcpy` (`ctypes.memmove`) "
        "of the same bytes between two touched buffers, best of 3, timed right before each "
        "write. Ratio = the median over the writes of migration MiB/s over memcpy MiB/s; "
        '"THP" maps with `MADV_HUGEPAGE` (how much became huge pages is shown), '
        '"4 KiB" with `MADV_NOHUGEPAGE`.'
    )
    if not args.no_docs:
        body = "\n\n".join(
            [head, anon, PAGE_CACHE_HEAD, files, CALIBRATION_HEAD, cal, INTERPRETATION]
        )
        write_section(KEY, TITLE, body)


PAGE_CACHE_HEAD = """\
Page cache (cgroup v2 only): the child writes a 64 MiB file on tmpfs (`/dev/shm`) from
inside the cpuset, so its pages are charged to it and placed on its node; moved/left from
`memory.numa_stat` (`shmem`). Once with the file only written (not mapped), once with it
also mapped and read by the child."""

CALIBRATION_HEAD = """\
Calibration: the same 128 MiB memcpy, and mapping and touching 128 MiB of 4 KiB pages (one
fault, allocation and page clear per page), in each guest and natively on the host (one
node, so the host cannot migrate between nodes itself). The guest's fault/memcpy figure
against the host's says how much more TCG slows per-page kernel work than bulk copies."""

INTERPRETATION = """\
_Interpretation: see the summary below the tables (written by hand from these runs)._"""


if __name__ == "__main__":
    main()
