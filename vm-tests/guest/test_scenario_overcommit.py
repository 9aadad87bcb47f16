"""Overcommit against workloads zoned did not write (issue 13): stress-ng on every cgroup mode
of a numa=fake=8 boot (6.1 v1, 6.1 v2, 6.12 v2).

Each scenario puts one container on the smallest node with the shipped policy defaults
and free nodes to lend, and runs a stress-ng workload that needs more than that node:

- **fast**: one worker filling 1.5 nodes as fast as it can (``--vm-keep``);
- **populate**: one worker faulting in 1.8 nodes in one ``mmap(MAP_POPULATE)`` (v2's
  ``memory.high`` throttles it inside that one system call, with its mmap lock held);
- **swarm**: eight workers started together, 1.7 nodes in all: it earns two nodes in
  one decision.

With zoned: no OOM kill, stress-ng finishes, the container holds what it grew to and the
kernel agrees. Without zoned: the same workload in a bare cgroup on the same node is
OOM-killed, so each scenario can fail. The fill rate is measured in the bare run.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zoned.model.sizes import MIB

from .cgtools import read, remove_tree, write
from .conftest import Finding
from .scenario_support import ROOT, V1_CPUSET, V1_MEMORY, Kmsg, guest_sizes, scenario, wait_for

pytestmark = pytest.mark.boot(numa="8")

V1 = os.environ.get("ZONED_VM_CGROUP") == "v1"
RUN_S = 10  # stress-ng --timeout
WAIT_S = 150.0  # the whole run, throttling and lends included, on a busy TCG host

SCENARIOS: dict[str, tuple[list[str], float, int]] = {
    # name: (stress-ng arguments, total size in smallest-node capacities, workers)
    "fast": (["--vm-keep"], 1.5, 1),
    "populate": (["--vm-keep", "--vm-populate"], 1.8, 1),
    "swarm": (["--vm-keep"], 1.7, 8),
}


def stress_args(name: str, size: int) -> list[str]:
    """stress-ng's arguments for scenario ``name`` on a node of ``size`` bytes."""
    extra, nodes, workers = SCENARIOS[name]
    return [
        "stress-ng",
        "--vm",
        str(workers),
        "--vm-bytes",  # stress-ng divides it among the workers
        f"{int(size * nodes) // MIB}M",
        "--vm-method",
        "write64",
        *extra,
        "--oomable",  # a killed worker stays dead: the kill shows in the outcome
        "--timeout",
        f"{RUN_S}s",
        "--metrics-brief",
    ]


def config(name: str) -> dict[str, Any]:
    # Placement gives one node the best fit: the smallest pool node (249 MiB of 251 on
    # numa=fake=8 with 2 GiB; node 0, 206 MiB, is reserved).
    host: dict[str, Any] = {"parent": f"zoned-vmtest-oc-{name}", "shared": 0}
    if V1:
        host["hierarchy"] = "v1"
    return {
        "config": {
            "host": host,
            "policy": {},  # the shipped defaults
            "containers": {"grower": {"min": {"nodes": 1}, "max": {"nodes": 4}}},
        }
    }


class Stress:
    """stress-ng started inside ``cgroups`` (each one's ``cgroup.procs``) before it runs."""

    def __init__(self, cgroups: list[Path], argv: list[str]) -> None:
        joins = " ".join(f"echo $$ > {cg}/cgroup.procs &&" for cg in cgroups)
        self.proc = subprocess.Popen(
            ["sh", "-c", f'{joins} exec "$@"', "sh", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.started = time.monotonic()

    def finish(self) -> tuple[int | None, str, float]:
        """(exit code or None if it had to be killed, output, seconds)."""
        try:
            out, _ = self.proc.communicate(timeout=WAIT_S)
            code: int | None = self.proc.returncode
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate(timeout=30)
            code = None
        return code, out, time.monotonic() - self.started


def memcg_kills(memcg: Path) -> int:
    """OOM kills of the cgroup's processes (cpuset-constrained ones included)."""
    text = read(memcg / ("memory.oom_control" if V1 else "memory.events"))
    m = re.search(r"^oom_kill (\d+)", text, re.M)
    return int(m.group(1)) if m else 0


def usage(memcg: Path) -> int:
    return int(read(memcg / ("memory.usage_in_bytes" if V1 else "memory.current")))


@contextlib.contextmanager
def bare(name: str, node: int) -> Iterator[tuple[list[Path], Path]]:
    """A cgroup on ``node`` with no daemon: (cgroups to join, its memory cgroup)."""
    leaf = f"zoned-vmtest-oc-bare-{name}"
    if V1:
        cpuset, memory = V1_CPUSET / leaf, V1_MEMORY / leaf
        pairs = [(cpuset, V1_CPUSET), (memory, V1_MEMORY)]
    else:
        for ctl in ("+cpuset", "+memory"):
            assert write(ROOT / "cgroup.subtree_control", ctl) == "ok"
        cpuset = memory = ROOT / leaf
        pairs = [(cpuset, ROOT)]
    for cg, root in pairs:
        remove_tree(cg, root)
    try:
        for cg, _ in pairs:
            cg.mkdir()
        if V1:
            cpus = read(V1_CPUSET / "cpuset.effective_cpus")
            assert write(cpuset / "cpuset.cpus", cpus) == "ok"
        assert write(cpuset / "cpuset.mems", str(node)) == "ok"
        yield [cg for cg, _ in pairs], memory
    finally:
        for cg, root in pairs:
            remove_tree(cg, root)


def fill_rate(memcg: Path, stress: Stress, node_bytes: int) -> float | None:
    """MiB/s from 20 % to 80 % of the node, sampled while the workload runs (None if it
    never got there)."""
    marks: dict[float, float] = {}
    while stress.proc.poll() is None and len(marks) < 2:
        u = usage(memcg)
        for frac in (0.2, 0.8):
            if frac not in marks and u >= frac * node_bytes:
                marks[frac] = time.monotonic()
        time.sleep(0.01)
    if len(marks) < 2 or marks[0.8] <= marks[0.2]:
        return None
    return 0.6 * node_bytes / MIB / (marks[0.8] - marks[0.2])


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_grows_without_oom_kill(name: str, tmp_path: Path, finding: Finding) -> None:
    sizes = guest_sizes()
    with scenario(f"oc-{name}", tmp_path, config(name)) as run:
        finding(f"{name}: daemon ready (s)", round(run.start_daemon(), 1))
        (node,) = run.holds("grower")
        assert node == min((n for n in sizes if n), key=lambda n: (sizes[n], n)), node
        node_bytes = sizes[node]
        argv = stress_args(name, node_bytes)
        memcg = run.cg("grower")
        stress = Stress([p / "grower" for p in run.parents], argv)
        code, out, seconds = stress.finish()
        wait_for(run.settled, "the hand-overs to end", 60)
        doc = run.status()
        held = run.container("grower", doc)["nodes"]
        kills = memcg_kills(memcg)
        killed = run.kmsg.killed()
        lends = [d for d in doc["decisions"] if d["kind"] == "lend"]
        finding(
            f"{name}: with zoned",
            {
                "argv": argv[1:],
                "exit": code,
                "seconds": round(seconds, 1),
                "nodes": held,
                "oom_kills": kills,
                "lends": [(round(d["at"], 2), d["what"], d["outcome"]) for d in lends],
                "stress-ng": out.strip().splitlines()[-3:],
            },
        )
        assert kills == 0 and not killed, (kills, killed, out)
        assert code == 0, out
        assert len(held) >= 2 and run.effective("grower") == held, (held, run.effective("grower"))
        outcomes = [d["outcome"] for d in lends]
        assert not any("asked for" in o or "still in the kernel" in o for o in outcomes), outcomes
        assert all(o in ("started", "armed") or o.startswith("done") for o in outcomes), outcomes

    # Without zoned: the same workload, the same node, nobody to lend.
    with bare(name, node) as (cgroups, memcg):
        kmsg = Kmsg()
        try:
            stress = Stress(cgroups, argv)
            rate = fill_rate(memcg, stress, node_bytes)
            code, out, seconds = stress.finish()
            kills, killed = memcg_kills(memcg), kmsg.killed()
        finally:
            kmsg.close()
        finding(
            f"{name}: without zoned",
            {
                "exit": code,
                "seconds": round(seconds, 1),
                "oom_kills": kills,
                "fill_MiB_per_s": round(rate) if rate else None,
                "stress-ng": out.strip().splitlines()[-3:],
            },
        )
        assert kills >= 1, f"without zoned the workload should not fit node {node}: {out}"
