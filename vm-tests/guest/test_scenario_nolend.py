"""Scenario *nothing to lend* (config/scenarios/vm-nolend.yaml) on cgroup v2, 6.1; also
the v2 ``memory.events`` OOM notification reaching the engine.

Every pool node is held at a container's min. "victim" grows past its one node in 16 MiB
chunks, each charged in one system call (MAP_POPULATE), so memory.high does not hold it:
the kernel OOM-kills it inside its zone. zoned records the kill with why nothing could be
lent (status), and no other container is touched (mems and pids unchanged).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_vm_scenarios_sim import EXPECTED

from .cgtools import read
from .conftest import Finding
from .test_scenario_support import keyed, scenario, sim_run, wait_for

pytestmark = pytest.mark.boot(kernel="6.1", cgroup="v2", numa="8")


def test_nothing_to_lend(tmp_path: Path, finding: Finding) -> None:
    with scenario("vm-nolend", tmp_path) as run:
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
        w = run.workload(
            "victim", "anon", "--mib", "300", "--rate", "30", "--chunk", "16", "--populate"
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
    sim, sim_ooms, _ = sim_run("vm-nolend")
    finding("nolend: sequences", {"kernel": kernel, "sim": sim})
    assert kernel == sim == EXPECTED["vm-nolend"]
    assert sim_ooms == 1
