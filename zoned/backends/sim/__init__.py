"""The simulated host: a deterministic ``Backend`` on a virtual clock.

Use it like any backend (the engine drives it through ``zoned.backends.base.Backend``),
or run a scenario without zoned to get a static baseline::

    from zoned.backends.sim import Isolation, load_scenario, run_baseline

    sc = load_scenario("scenarios/burst.yaml")
    sim = sc.backend()                        # ZONES; the engine calls ensure() etc.
    result = run_baseline(sc, Isolation.NONE)  # no isolation, no engine
    print(result.stats.oom_kills, len(result.history))

Modules: ``host`` (the model, ``SimBackend``), ``workload`` (the workload language),
``faults`` (injectable faults), ``scenario`` (scenario files). Each documents its format.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from zoned.backends.base import Event
from zoned.backends.sim.faults import (
    Fault,
    Gone,
    PartialMigration,
    SetNodesError,
    SlowMigration,
    parse_faults,
)
from zoned.backends.sim.host import (
    ContainerStats,
    Isolation,
    Sample,
    SimBackend,
    SimKnobs,
    SimNode,
    SimStats,
)
from zoned.backends.sim.scenario import Scenario, load_scenario, loads_scenario
from zoned.backends.sim.workload import (
    Alloc,
    Exit,
    Free,
    Hold,
    Phase,
    Ramp,
    Walk,
    WorkloadSpec,
    parse_workload,
)

__all__ = [
    "Alloc",
    "BaselineResult",
    "ContainerStats",
    "Exit",
    "Fault",
    "Free",
    "Gone",
    "Hold",
    "Isolation",
    "PartialMigration",
    "Phase",
    "Ramp",
    "Sample",
    "Scenario",
    "SetNodesError",
    "SimBackend",
    "SimKnobs",
    "SimNode",
    "SimStats",
    "SlowMigration",
    "Walk",
    "WorkloadSpec",
    "load_scenario",
    "loads_scenario",
    "parse_faults",
    "parse_workload",
    "run_baseline",
    "static_layout",
]


@dataclass(frozen=True)
class BaselineResult:
    """A scenario run with no engine."""

    stats: SimStats
    history: tuple[Sample, ...]
    events: tuple[Event, ...]
    layout: Mapping[str, frozenset[int]]


def static_layout(scenario: Scenario) -> dict[str, frozenset[int]]:
    """Each container's initial nodes as zoned's placement gives them (its ``min``)."""
    from zoned.policy.placement import place  # placement is another part of zoned

    sim = scenario.backend()
    placement = place(sim.topology(), scenario.decls)
    return {c.name: placement.zonemap.nodes_of(c.name) for c in scenario.decls.containers}


def run_baseline(
    scenario: Scenario,
    isolation: Isolation = Isolation.ZONES,
    layout: Mapping[str, frozenset[int]] | None = None,
    memcg_limits: Mapping[str, int] | None = None,
    duration_s: float | None = None,
) -> BaselineResult:
    """Run ``scenario`` with nobody juggling nodes.

    ``ZONES``: static zones, each container keeps ``layout`` (default ``static_layout``).
    ``NONE``: every container may use every unreserved node. ``MEMCG``: the same plus a
    fixed memory.max per container (``memcg_limits``, default each declared ``max``).
    """
    sim = scenario.backend(isolation=isolation, memcg_limits=memcg_limits)
    if layout is None:
        layout = static_layout(scenario) if isolation is Isolation.ZONES else {}
    for decl in scenario.decls.containers:
        sim.ensure(decl, layout.get(decl.name, frozenset()))
    sim.run_until(scenario.duration_s if duration_s is None else duration_s)
    used = {name: st.nodes for name, st in sim.existing().items()}
    return BaselineResult(sim.stats(), tuple(sim.history), tuple(sim.events), used)
