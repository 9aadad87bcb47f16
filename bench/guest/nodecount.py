"""Guest side of ``bench/vm_nodecount.py``: page-fault cost by the cpuset's node.

A child in a v2 cpuset with ``mems = {node}`` repeatedly maps 8 MiB of private anonymous
memory with 4 KiB pages (``MADV_NOHUGEPAGE``), writes one byte per page through a strided
memoryview (a C loop: one page fault per page, no Python per page) and unmaps it. Every
fault allocates a page: the allocator walks the CPU's zonelist (all CPUs sit on node 0)
until it reaches a zone of an allowed node, so ``mems = last node`` walks the whole list
and ``mems = node 1`` almost none. Each run reports its per-map times; runs of the
different nodes alternate so slow phases of the host hit them all alike.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

NAME = "zbench-nc"
CG = Path("/sys/fs/cgroup")

CHILD = r"""
import json, mmap, re, sys, time
sys.stdin.readline()
chunk, iters = int(sys.argv[1]), int(sys.argv[2])
ones = b"\1" * (chunk // 4096)
times, placed = [], {}
for i in range(iters):
    t0 = time.perf_counter_ns()
    m = mmap.mmap(-1, chunk, flags=mmap.MAP_PRIVATE)
    m.madvise(mmap.MADV_NOHUGEPAGE)
    v = memoryview(m)
    v[::4096] = ones
    if i == 0:  # where did the pages go? (outside the timed part would skew nothing)
        for line in open("/proc/self/numa_maps"):
            if "anon=%d" % (chunk // 4096) in line:
                placed = {k: int(n) for k, n in re.findall(r"N(\d+)=(\d+)", line)}
    v.release()
    m.close()
    times.append(time.perf_counter_ns() - t0)
print(json.dumps({"times_ns": times, "placed": placed}), flush=True)
"""


def free_mib(node: int) -> float:
    text = Path(f"/sys/devices/system/node/node{node}/meminfo").read_text()
    m = re.search(r"MemFree:\s+(\d+) kB", text)
    return int(m.group(1)) / 1024 if m else 0.0


def speed_ms() -> float:
    """Best of 3 of a fixed bit of Python work: how fast the guest runs right now. Boots run
    at different times and TCG slows down when other jobs take the host's cores; dividing
    by this makes boots comparable."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        sum(range(200_000))
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def run_on(node: int, chunk: int, iters: int) -> dict[str, list[int] | dict[str, int]]:
    (CG / NAME / "cpuset.mems").write_text(str(node))
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(chunk), str(iters)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    (CG / NAME / "cgroup.procs").write_text(str(proc.pid))  # v2 migrates its pages here
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    if not select.select([proc.stdout], [], [], 600)[0]:
        proc.kill()
        raise RuntimeError(f"node {node}: no answer")
    line = proc.stdout.readline()
    proc.wait(timeout=60)
    if not line:
        raise RuntimeError(f"node {node}: child died (status {proc.returncode})")
    out: dict[str, list[int] | dict[str, int]] = json.loads(line)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunk-mib", type=int, default=8)
    ap.add_argument("--iters", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    ctl = CG / "cgroup.subtree_control"
    if "cpuset" not in ctl.read_text().split():
        ctl.write_text("+cpuset +memory")
    (CG / NAME).mkdir(exist_ok=True)
    nodes = sorted(int(p.name[4:]) for p in Path("/sys/devices/system/node").glob("node[0-9]*"))
    want = os.environ.get("ZONED_VM_NUMA", "")
    if want.isdigit() and len(nodes) != int(want):
        raise SystemExit(f"asked for numa=fake={want}, the kernel made {len(nodes)} node(s)")
    chunk = args.chunk_mib << 20
    targets = {"first pool node (1)": nodes[1], f"last node ({nodes[-1]})": nodes[-1]}
    sizes = {n: free_mib(n) for n in nodes}
    print(f"{len(nodes)} nodes; free MiB of node 1 {sizes[1]:.0f}, last {sizes[nodes[-1]]:.0f}")
    runs: dict[str, list[dict[str, list[int] | dict[str, int]]]] = {k: [] for k in targets}
    speeds: list[float] = []
    for rep in range(args.reps):
        for label, node in targets.items():
            speeds.append(speed_ms())
            r = run_on(node, chunk, args.iters)
            runs[label].append(r)
            t = r["times_ns"]
            assert isinstance(t, list)
            times = sorted(t)
            print(f"rep {rep} {label}: median {times[len(times) // 2] / 1e6:.1f} ms per map")
    out = {
        "kernel": os.uname().release,
        "numa": os.environ.get("ZONED_VM_NUMA", "?"),
        "nodes": len(nodes),
        "node_mib": {str(n): round(v, 1) for n, v in sizes.items()},
        "chunk_mib": args.chunk_mib,
        "targets": targets,
        "runs": runs,
        "speed_ms": speeds,
    }
    args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
