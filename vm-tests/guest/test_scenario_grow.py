"""Scenario *grow before OOM* (config/scenarios/vm-grow.yaml) on cgroup v2: 6.1 and the
newest kernel with numa=fake=8, and 6.1 with the uneven numa=fake=256M.

"app" holds one node; its workload grows anonymous memory at 30 MiB/s to a size fitted to
the topology (``fit``: about 300 MiB on both): more than app's one node holds, under the
tripwire of that node plus the one zoned will lend. With zoned running, the tripwire
(memory.high) holds it while zoned lends a free node, and it finishes with no OOM kill.
The same workload in the same kind of cgroup on the same node without zoned is OOM-killed
by the kernel: the test can fail.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.scenarios import EXPECTED, coarse, reason_kind
from zoned.model.sizes import MIB
from zoned.model.zonemap import FREE

from .conftest import Finding
from .scenario_support import (
    Kmsg,
    Workload,
    bare_cgroup,
    fitted,
    guest_sizes,
    keyed,
    nodes_of,
    plan_of,
    ramp_mib,
    scenario,
    sim_run,
)

pytestmark = pytest.mark.boot(kernel=("6.1", "newest"), cgroup="v2")

RATE = 30  # MiB/s


def fit() -> tuple[dict[str, Any], list[int], int]:
    """vm-grow on this guest's nodes: (the document, app's planned node, the lent one).

    app's workload is sized halfway between what its one node holds and the tripwire of
    that node plus the lowest free node (the one zoned lends first): it cannot fit without
    a lend and fits with it, whatever the node sizes."""
    doc = fitted("vm-grow")
    plan = plan_of(doc)
    sizes = guest_sizes()
    app = list(nodes_of(plan, "app"))
    free = sorted(plan.zonemap.nodes_with(FREE))
    assert len(app) == 1 and free, (app, free)
    cap0, cap1 = sizes[app[0]], sizes[app[0]] + sizes[free[0]]
    trip = cap1 * int(doc["config"]["policy"]["tripwire_pct"]) / 100
    size = round((cap0 + trip) / 2 / MIB / 4) * 4
    assert cap0 < size * MIB < trip, (cap0, size, trip)
    doc["workloads"]["app"]["phases"][0] = {
        "ramp": {"anon": f"{size}M", "over_s": round(size / RATE, 1)}
    }
    return doc, app, free[0]


def test_grow_before_oom(tmp_path: Path, finding: Finding) -> None:
    t_begin = time.monotonic()
    scn, planned, lend = fit()
    args = ("anon", "--mib", str(ramp_mib(scn, "app")), "--rate", str(RATE))
    sizes = guest_sizes()
    finding(
        "grow: fitted",
        {"app_node": planned, "lowest_free": lend, "workload": args, "node_sizes": sizes},
    )
    with scenario("vm-grow", tmp_path, scn) as run:
        finding("grow: daemon ready (s)", round(run.start_daemon(), 1))
        before = run.holds("app")
        assert before == planned and run.effective("app") == before
        w = run.workload("app", *args)
        assert w.finish(), "the workload was killed although zoned was running"
        doc = run.status()
        app = run.container("app", doc)
        assert len(app["nodes"]) == 2 and run.effective("app") == app["nodes"]
        assert app["nodes"] == sorted([*planned, lend]), (app["nodes"], lend)
        events = keyed(run.cg("app") / "memory.events")
        assert events["oom_kill"] == 0, events
        assert w.pid not in run.kmsg.killed()
        lends = [d for d in doc["decisions"] if d["kind"] == "lend"]
        # crossed the tripwire, or (when the policy looked while it rose) would fill its zones
        assert lends and reason_kind(lends[0]["reason"]) in ("tripwire", "rising"), lends
        done = next(d for d in lends if d["outcome"].startswith("done"))
        # time to lend: from the workload crossing its first tripwire to the node held
        cap0 = sum(n["total"] - (n["reserve"] or 0) for n in doc["nodes"] if n["node"] in before)
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
    sim, sim_ooms, _ = sim_run("vm-grow", doc=scn)
    finding("grow: sequences", {"kernel": kernel, "sim": sim})
    assert coarse(kernel) == coarse(sim) == coarse(EXPECTED["vm-grow"])
    assert sim_ooms == 0

    # Without zoned: the same cgroup on the same node, no daemon, no memory.high.
    with bare_cgroup("zoned-vmtest-scn-grow-bare", before) as cg:
        kmsg = Kmsg()
        bare = Workload(cg, *args)
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
    _, static_ooms, _ = sim_run("vm-grow", "static-zones", scn)
    assert static_ooms >= 1
    finding("grow: scenario s (both halves)", round(time.monotonic() - t_begin, 1))
