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

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from zoned.backends.sim import load_scenario
from zoned.cli.commands.simulate import json_report, run_scenario

SCENARIOS = Path(__file__).resolve().parents[1] / "config" / "scenarios"

Step = tuple[str, str, str, str]  # (kind, from, to, reason kind)

_MOVES = {
    "lend": re.compile(r"lend node \d+ to (?P<to>\S+)"),
    "reclaim": re.compile(r"reclaim node \d+ from (?P<frm>\S+) for (?P<to>\S+)"),
    "return": re.compile(r"return node \d+ from (?P<frm>\S+) to the pool"),
    "directed-reclaim": re.compile(r"directed reclaim of \S+ from (?P<frm>\S+)"),
    "oom": re.compile(r"record OOM kill in (?P<to>\S+)"),
}


def reason_kind(reason: str) -> str:
    """What a decision's reason says moved it, in one word."""
    if re.search(r": zoned lend \d+ ", reason):
        return "operator"
    if "nothing can be lent" in reason or "no donor" in reason:
        return "nothing-to-lend"
    if "would not fit under the tripwire" in reason:
        return "evacuate"
    if "crossed tripwire" in reason:
        return "tripwire"
    if "would fill its zones" in reason:
        return "rising"
    if "stalled" in reason:
        return "stall"
    if "no need for more memory" in reason:
        return "idle"
    if "node" in reason and "was free" in reason:
        return "too-fast"
    if "came too late" in reason:
        return "too-late"
    return "other"


def sequence(decisions: Iterable[Mapping[str, Any]]) -> list[Step]:
    """The decision sequence of a decision log (each action once: when it started, or
    when an OOM was recorded)."""
    out: list[Step] = []
    for d in decisions:
        kind = str(d["kind"])
        pat = _MOVES.get(kind)
        if pat is None or d["outcome"] not in ("started", "recorded"):
            continue
        m = pat.search(str(d["what"]))
        if m is None:
            continue
        got = m.groupdict()
        frm = got.get("frm") or ("pool" if kind == "lend" else "")
        to = got.get("to") or ("pool" if kind == "return" else "")
        out.append((kind, frm, to, reason_kind(str(d["reason"]))))
    return out


def coarse(steps: Iterable[Step]) -> list[Step]:
    """``steps`` with "rising" (anon would fill the zones before the next look) counted as
    "tripwire": which of the two a growing container shows depends on when the policy
    looked (the kernel run's timing), not on what it decided (docs/sim-vs-kernel.md)."""
    return [(k, f, t, "tripwire" if r == "rising" else r) for k, f, t, r in steps]


def sim_decisions(path: Path, mode: str = "zoned") -> list[dict[str, Any]]:
    run = run_scenario(load_scenario(path), mode)
    doc = json_report(run, None)
    decisions: list[dict[str, Any]] = doc["decisions"]
    return decisions


def sim_oom_kills(path: Path, mode: str = "zoned") -> int:
    return run_scenario(load_scenario(path), mode).oom_kills


# What each scenario must come to, in the simulator and (apart from the differences
# listed in docs/sim-vs-kernel.md) on the kernel.
EXPECTED: dict[str, list[Step]] = {
    "vm-grow": [("lend", "pool", "app", "tripwire")],
    "vm-evacuate": [
        ("lend", "pool", "donor", "tripwire"),  # the guest: an operator lend (setup)
        ("reclaim", "donor", "recv", "tripwire"),
    ],
    "vm-directed": [
        ("lend", "pool", "donor", "tripwire"),  # the guest: an operator lend (setup)
        ("directed-reclaim", "donor", "", "evacuate"),
        ("reclaim", "donor", "recv", "tripwire"),
    ],
    "vm-nolend": [("oom", "", "victim", "nothing-to-lend")],
    # notifications: nothing may move (at its max); the engine sees PRESSURE
    "vm-pressure": [],
    # the guest's memcg limit (its OOM record) is not in the sim: no moves, no kill
    "vm-v1notify": [],
}
OOM_KILLS = {
    "vm-grow": 0,
    "vm-evacuate": 0,
    "vm-directed": 0,
    "vm-nolend": 1,
    "vm-pressure": 0,
    "vm-v1notify": 0,
}


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
