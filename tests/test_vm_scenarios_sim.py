"""The VM scenarios' simulator twins (config/scenarios/vm-*.yaml) reach the decisions the
kernel run reached (vm-tests/guest/test_scenario_*.py, which compare the two directly in
the guest with the guest's own node sizes; docs/sim-vs-kernel.md has the differences).

A decision sequence is what both runs must agree on: each node move with its kind, from
and to (containers, or ``pool``), the kind of its reason, and OOM records; not times,
node ids or byte counts. ``sequence`` reads it from decision-log records as the status
document and ``zoned simulate --json`` print them (``kind``, ``what``, ``reason``,
``outcome``); the guest tests import it from here.
"""

from __future__ import annotations

import pytest

from tests.support.scenarios import (
    EXPECTED,
    OOM_KILLS,
    SCENARIOS,
    sequence,
    sim_decisions,
    sim_oom_kills,
)
from zoned.backends.sim import load_scenario
from zoned.cli.commands.simulate import run_scenario


def test_every_vm_scenario_has_an_expectation() -> None:
    names = {p.stem for p in SCENARIOS.glob("vm-*.yaml")}
    assert names == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_vm_scenario_on_the_sim(name: str) -> None:
    path = SCENARIOS / f"{name}.yaml"
    assert sequence(sim_decisions(path)) == EXPECTED[name]
    assert sim_oom_kills(path) == OOM_KILLS[name]


def test_vm_pressure_stalls_into_psi_events() -> None:
    """Throttled at its tripwire with nowhere to grow: "some" stall, PSI events, no kill;
    zoned notes each need and cannot act (the guest: the engine logs the PRESSURE event)."""
    run = run_scenario(load_scenario(SCENARIOS / "vm-pressure.yaml"))
    press = run.backend.stats().containers["press"]
    assert press.pressure_events >= 1 and press.tripwires == 1 and press.oom_kills == 0
    notes = [r.reason for r in run.log if r.kind == "note"]
    assert notes and all("at its max" in n for n in notes), notes


def test_vm_grow_without_zoned_is_killed() -> None:
    """The same workload in static zones (the guest: the cgroup without the daemon)."""
    assert sim_oom_kills(SCENARIOS / "vm-grow.yaml", "static-zones") >= 1


def test_sequence_reads_the_log_forms() -> None:
    log = [
        {
            "kind": "lend",
            "what": "lend node 6 to donor",
            "reason": "root: zoned lend 6 donor",
            "outcome": "started",
        },
        {"kind": "lend", "what": "lend node 6 to donor", "reason": "x", "outcome": "done in 0.1s"},
        {"kind": "tripwire", "what": "tripwire of a at 1M", "reason": "r", "outcome": "armed"},
        {
            "kind": "return",
            "what": "return node 2 from a to the pool",
            "reason": "a: no need for more memory for 5s",
            "outcome": "started",
        },
        {
            "kind": "oom",
            "what": "record OOM kill in v",
            "reason": "v: ...; no free node; no donor (b at its min)",
            "outcome": "recorded",
        },
    ]
    assert sequence(log) == [
        ("lend", "pool", "donor", "operator"),
        ("return", "a", "pool", "idle"),
        ("oom", "", "v", "nothing-to-lend"),
    ]
