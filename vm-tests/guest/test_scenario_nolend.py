"""Scenario *nothing to lend* (config/scenarios/vm-nolend.yaml) on cgroup v2: 6.1 and
the newest kernel with numa=fake=8, 6.1 with the uneven numa=fake=256M; also the v2
``memory.events`` OOM notification reaching the engine.

Every pool node is held at a container's min ("filler" holds all but two: five with
numa=fake=8, four with 256M). "victim" grows past its one node in 16 MiB chunks, each
charged in one system call (MAP_POPULATE), so memory.high does not hold it: the kernel
OOM-kills it inside its zone. zoned records the kill with why nothing could be lent
(status), and no other container is touched (mems and pids unchanged).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.scenarios import EXPECTED
from zoned.model.zonemap import FREE

from .cgtools import read
from .conftest import Finding
from .scenario_support import (
    fitted,
    guest_sizes,
    keyed,
    mib,
    nodes_of,
    plan_of,
    ramp_mib,
    scenario,
    sim_run,
    wait_for,
)

pytestmark = pytest.mark.boot(kernel=("6.1", "newest"), cgroup="v2")

BEYOND = 32  # MiB the victim's ramp must reach past its node's MemTotal at least


def fit_nolend() -> dict[str, Any]:
    """vm-nolend on this guest's nodes: filler holds every pool node but victim's and the
    bystander's, so none is free. Placement gives whole-node mins smallest node first,
    victim (priority 5) before the bystander, so victim gets a ~250 MiB node and the
    bystander the largest (numa=fake=256M's ~472 MiB last node): the yaml's 300 MiB is
    past victim's node on both boots. On numa=fake=8 that is the yaml as written."""
    doc = fitted("vm-nolend")
    host = doc["config"]["host"]
    sizes = guest_sizes()
    pool = len(sizes) - len(host["reserved_nodes"]) - int(host["shared"])
    assert pool >= 3, f"vm-nolend needs three pool nodes; this guest has {pool}"
    doc["config"]["containers"]["filler"].update(min={"nodes": pool - 2}, max={"nodes": pool - 2})
    plan = plan_of(doc)
    assert not plan.zonemap.nodes_with(FREE), plan
    (victim,) = nodes_of(plan, "victim")
    assert mib(sizes[victim]) + BEYOND <= ramp_mib(doc, "victim"), (victim, sizes)
    return doc


def test_nothing_to_lend(tmp_path: Path, finding: Finding) -> None:
    doc = fit_nolend()
    with scenario("vm-nolend", tmp_path, doc) as run:
        finding("nolend: daemon ready (s)", round(run.start_daemon(), 1))
        others = {name: run.sleeper(name) for name in ("filler", "bystander")}

        def looks() -> dict[str, tuple[str, str]]:
            return {
                name: (
                    read(run.cg(name) / "cpuset.mems.effective"),
                    read(run.cg(name) / "cgroup.procs"),
                )
                for name in others
            }

        before = looks()
        assert all(procs == str(others[n]) for n, (_, procs) in before.items()), before
        victim_nodes = run.holds("victim")
        assert victim_nodes == list(nodes_of(plan_of(doc), "victim"))
        size = str(ramp_mib(doc, "victim"))
        w = run.workload(
            "victim", "anon", "--mib", size, "--rate", "30", "--chunk", "16", "--populate"
        )
        assert not w.finish(), "the victim fitted: nothing was full"
        events = keyed(run.cg("victim") / "memory.events")
        assert events["oom_kill"] >= 1, events
        assert w.pid in run.kmsg.killed()
        oom = wait_for(lambda: run.decisions("oom"), "the OOM record", 60)
        victim = run.container("victim")
        assert victim["oom_kills"] >= 1 and victim["nodes"] == victim_nodes
        assert looks() == before
        assert not run.decisions("lend") and not run.decisions("reclaim")
        notes = [d["reason"] for d in run.decisions("note") if "nothing can be lent" in d["reason"]]
        finding(
            "nolend: kernel",
            {
                "reached_mib": w.progress[-1][1] if w.progress else 0,
                "memory.events": events,
                "oom_record": oom[0]["reason"],
                "oom_recorded_after_kill_s": round(oom[0]["at"] - w.progress[-1][0], 2)
                if w.progress
                else None,
                "notes": notes[:1],
            },
        )
        kernel = run.kernel_sequence()
    sim, sim_ooms, _ = sim_run("vm-nolend", doc=doc)
    finding("nolend: sequences", {"kernel": kernel, "sim": sim})
    assert kernel == sim == EXPECTED["vm-nolend"]
    assert sim_ooms == 1
