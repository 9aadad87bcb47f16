"""Scenarios *reclaim and evacuate* and *directed reclaim* (config/scenarios/vm-evacuate.yaml,
vm-directed.yaml) on cgroup v2, 6.1.

Every pool node is lent ("filler" holds four at its min; the operator lends the last
free node to "donor"). The donor's memory is interleaved over its two nodes. Then "recv"
(priority 10) grows past its tripwire: zoned takes a node from the idle donor, its pages
migrated to the donor's other node before the hand-over (memory.numa_stat before and
after), nothing of the donor killed. In the directed case the donor holds page cache that
would not fit under the tripwire of the node it keeps: zoned reclaims it first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.test_vm_scenarios_sim import EXPECTED, Step
from zoned.sizes import MIB

from .conftest import RUN_DIR, Finding
from .test_scenario_support import (
    STEP_S,
    Run,
    keyed,
    migrated_bytes,
    numa_stat,
    scenario,
    sim_run,
    size_after,
    size_before,
    wait_for,
)

pytestmark = pytest.mark.boot(kernel="6.1", cgroup="v2")

DRAINED = 16 * MIB  # the engine's own bound for "evacuated" (engine.DRAINED_BYTES)


def lend_free_to_donor(run: Run) -> list[int]:
    doc = run.status()
    free = [n["node"] for n in doc["nodes"] if n["kind"] == "free"]
    assert len(free) == 1, doc["nodes"]
    run.call({"cmd": "lend", "node": free[0], "container": "donor"})
    wait_for(lambda: len(run.holds("donor")) == 2 and run.settled(), "the operator lend", 60)
    held = run.holds("donor")
    assert run.effective("donor") == held
    return held


def same_moves(kernel: list[Step], sim: list[Step]) -> None:
    """The kernel run's setup is an operator lend, the simulator's a tripwire lend."""
    assert kernel[0] == ("lend", "pool", "donor", "operator"), kernel
    assert sim[0] == ("lend", "pool", "donor", "tripwire"), sim
    assert kernel[1:] == sim[1:]


def hand_over(
    run: Run, finding: Finding, kind: str, name: str, drained: str | None = None
) -> dict[str, Any]:
    """recv grows; returns what the kernel and the daemon show, checked in common: the
    donor's ``drained`` pages (default: ``kind``) are off the taken node."""
    donor_pid = run.workloads[0].pid
    donor_nodes = run.holds("donor")
    stat0 = numa_stat(run.cg("donor"))
    recv = run.workload("recv", "anon", "--mib", "140", "--rate", "30")
    assert recv.finish(), "recv was killed"
    wait_for(run.settled, "the hand-over to settle", STEP_S)
    doc = run.status()
    kept = run.container("donor", doc)["nodes"]
    assert len(kept) == 1 and run.effective("donor") == kept
    (taken,) = set(donor_nodes) - set(kept)
    assert taken in run.container("recv", doc)["nodes"]
    assert taken in run.effective("recv")
    stat1 = numa_stat(run.cg("donor"))
    for cg in ("donor", "recv"):
        assert keyed(run.cg(cg) / "memory.events")["oom_kill"] == 0
    assert run.workloads[0].proc.poll() is None, "the donor's workload died"
    assert donor_pid not in run.kmsg.killed() and recv.pid not in run.kmsg.killed()
    rec = next(
        d for d in doc["decisions"] if d["kind"] == "reclaim" and d["outcome"].startswith("done")
    )
    start = next(
        d for d in doc["decisions"] if d["kind"] == "reclaim" and d["outcome"] == "started"
    )
    got = {
        "taken": taken,
        "donor_numa_stat_before": {k: stat0[k] for k in (kind,)},
        "donor_numa_stat_after": {k: stat1[k] for k in (kind,)},
        "reclaim": rec["outcome"],
        "reclaim_s": round(rec["at"] - start["at"], 2),
        "migrated_bytes": migrated_bytes(rec["outcome"]),
        "reason": rec["reason"],
    }
    finding(f"{name}: hand-over", got)
    assert stat1[drained or kind].get(taken, 0) <= DRAINED, (stat0, stat1)
    return {
        "stat0": stat0,
        "stat1": stat1,
        "taken": taken,
        "kept": kept[0],
        "doc": doc,
        "outcome": rec["outcome"],
    }


def test_reclaim_and_evacuate(tmp_path: Path, finding: Finding) -> None:
    with scenario("vm-evacuate", tmp_path) as run:
        finding("evacuate: daemon ready (s)", round(run.start_daemon(), 1))
        lend_free_to_donor(run)
        donor = run.workload("donor", "anon", "--mib", "64", "--rate", "64", "--interleave")
        assert donor.finish()
        got = hand_over(run, finding, "anon", "evacuate")
        s0, s1, taken = got["stat0"]["anon"], got["stat1"]["anon"], got["taken"]
        assert s0.get(taken, 0) >= 16 * MIB, s0  # there was something to move
        assert abs(sum(s1.values()) - sum(s0.values())) <= 8 * MIB, (s0, s1)
        kernel = run.kernel_sequence()
    sim, sim_ooms, _ = sim_run("vm-evacuate")
    finding("evacuate: sequences", {"kernel": kernel, "sim": sim})
    same_moves(kernel, sim)
    assert sim == EXPECTED["vm-evacuate"] and sim_ooms == 0


def test_directed_reclaim(tmp_path: Path, finding: Finding) -> None:
    """The donor's memory is page cache: read(2) of a sparse file on the project's 9p share.
    9p mounted cache=loose reads through the page cache (measured: numa_stat ``file`` on
    the donor's nodes, reclaimable by memory.reclaim); tmpfs would not do (shmem: not
    reclaimable without swap). Measured on 6.1: a cpuset.mems change migrates only pages
    the tasks map (the kernel walks their page tables), so page cache that was only read
    stays on the taken node (the hand-over's "left behind", charged to the donor and
    reclaimable there): only its anon is drained."""
    cache = RUN_DIR / "scenario-directed.bin"  # sparse, on the 9p share: real page cache
    try:
        with scenario("vm-directed", tmp_path) as run:
            finding("directed: daemon ready (s)", round(run.start_daemon(), 1))
            lend_free_to_donor(run)
            args = ("file", "--path", str(cache), "--mib", "180", "--rate", "60")
            donor = run.workload("donor", *args, "--interleave")
            assert donor.finish()
            got = hand_over(run, finding, "file", "directed", drained="anon")
            dr = [d for d in got["doc"]["decisions"] if d["kind"] == "directed-reclaim"]
            done = [d for d in dr if d["outcome"].startswith("done")]
            assert done, dr
            finding("directed: directed reclaim", [d["outcome"] for d in dr])
            asked = size_after(done[0]["what"], "directed reclaim of")
            reclaimed = size_after(done[0]["outcome"], "reclaimed")
            assert asked >= 16 * MIB and reclaimed >= asked, done[0]
            s0, s1, taken = got["stat0"]["file"], got["stat1"]["file"], got["taken"]
            assert sum(s0.values()) >= 160 * MIB and s0.get(taken, 0) >= 32 * MIB, s0
            # the page cache reclaimed is gone from the donor's memcg...
            assert sum(s1.values()) <= sum(s0.values()) - asked + 8 * MIB, (s0, s1)
            # ...what stays on the taken node is the hand-over's "left behind"...
            left = size_before(got["outcome"], "left behind")
            assert abs(s1.get(taken, 0) - left) <= 8 * MIB, (got["outcome"], s1)
            # ...and what the donor keeps fits under its kept node's tripwire (50%)
            cap = next(n["total"] for n in got["doc"]["nodes"] if n["node"] == got["kept"])
            assert s1.get(got["kept"], 0) <= cap * 0.5, (cap, s1)
            kernel = run.kernel_sequence()
    finally:
        cache.unlink(missing_ok=True)
    sim, sim_ooms, _ = sim_run("vm-directed")
    finding("directed: sequences", {"kernel": kernel, "sim": sim})
    same_moves(kernel, sim)
    assert sim == EXPECTED["vm-directed"] and sim_ooms == 0
