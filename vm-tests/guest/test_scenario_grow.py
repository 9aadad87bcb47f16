"""Scenario *grow before OOM* (config/scenarios/vm-grow.yaml) on cgroup v2, 6.1 and 6.12.

"app" holds one node; its workload grows 300 MiB of anonymous memory at 30 MiB/s. With
zoned running, the tripwire (memory.high) holds it while zoned lends a free node, and it
finishes with no OOM kill. The same workload in the same kind of cgroup on the same node
without zoned is OOM-killed by the kernel: the test can fail.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.test_vm_scenarios_sim import EXPECTED, coarse, reason_kind

from .conftest import Finding
from .test_scenario_support import Kmsg, Workload, bare_cgroup, keyed, scenario, sim_run

pytestmark = pytest.mark.boot(kernel=("6.1", "6.12"), cgroup="v2")

ARGS = ("anon", "--mib", "300", "--rate", "30")


def test_grow_before_oom(tmp_path: Path, finding: Finding) -> None:
    t_begin = time.monotonic()
    with scenario("vm-grow", tmp_path) as run:
        finding("grow: daemon ready (s)", round(run.start_daemon(), 1))
        before = run.holds("app")
        assert len(before) == 1 and run.effective("app") == before
        w = run.workload("app", *ARGS)
        assert w.finish(), "the workload was killed although zoned was running"
        doc = run.status()
        app = run.container("app", doc)
        assert len(app["nodes"]) == 2 and run.effective("app") == app["nodes"]
        events = keyed(run.cg("app") / "memory.events")
        assert events["oom_kill"] == 0, events
        assert w.pid not in run.kmsg.killed()
        lends = [d for d in doc["decisions"] if d["kind"] == "lend"]
        # crossed the tripwire, or (when the policy looked while it rose) would fill its zones
        assert lends and reason_kind(lends[0]["reason"]) in ("tripwire", "rising"), lends
        done = next(d for d in lends if d["outcome"].startswith("done"))
        # time to lend: from the workload crossing its first tripwire to the node held
        cap0 = sum(n["total"] for n in doc["nodes"] if n["node"] in before)
        crossed = w.crossed(cap0 * int(run.config["policy"]["tripwire_pct"]) / 100 / 2**20)
        finding(
            "grow: lend",
            {
                "what": done["what"],
                "outcome": done["outcome"],
                "reason": done["reason"],
                "tripwire_to_lent_s": round(done["at"] - crossed, 2) if crossed else None,
                "workload_s": round(w.progress[-1][0] - w.started, 1),
                "memory.events": events,
            },
        )
        kernel = run.kernel_sequence()
    sim, sim_ooms, _ = sim_run("vm-grow")
    finding("grow: sequences", {"kernel": kernel, "sim": sim})
    assert coarse(kernel) == coarse(sim) == coarse(EXPECTED["vm-grow"])
    assert sim_ooms == 0

    # Without zoned: the same cgroup on the same node, no daemon, no memory.high.
    with bare_cgroup("zoned-vmtest-scn-grow-bare", before) as cg:
        kmsg = Kmsg()
        bare = Workload(cg, *ARGS)
        try:
            finished = bare.finish()
            events = keyed(cg / "memory.events")
            killed = kmsg.killed()
        finally:
            bare.stop()
            kmsg.close()
        finding(
            "grow without zoned",
            {
                "reached_mib": bare.progress[-1][1] if bare.progress else 0,
                "events": events,
                "killed": killed,
            },
        )
        assert not finished, "without zoned the workload should not fit its one node"
        assert events["oom_kill"] >= 1 and bare.pid in killed
    _, static_ooms, _ = sim_run("vm-grow", "static-zones")
    assert static_ooms >= 1
    finding("grow: scenario s (both halves)", round(time.monotonic() - t_begin, 1))
