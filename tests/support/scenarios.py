"""The VM scenarios' expected decision sequences, and a decision log read as steps.

Shared by the sim test (tests/test_vm_scenarios_sim.py) and the VM guest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from zoned.backends.sim import load_scenario
from zoned.cli.commands.simulate import json_report, run_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "config" / "scenarios"

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
    if "would fill its zones" in reason or "with the tripwire" in reason:
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
