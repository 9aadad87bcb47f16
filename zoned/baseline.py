"""A scenario on the simulated host with nobody juggling nodes: the baselines zoned is
measured against (static zones as placement deals them, no isolation, fixed memcg limits).

It joins the simulated backend with the placement policy, so it sits above both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from zoned.backends.sim import Isolation, Sample, Scenario, SimStats
from zoned.model.host import Event
from zoned.policy.placement import place


@dataclass(frozen=True)
class BaselineResult:
    """A scenario run with no engine."""

    stats: SimStats
    history: tuple[Sample, ...]
    events: tuple[Event, ...]
    layout: Mapping[str, frozenset[int]]


def static_layout(scenario: Scenario) -> dict[str, frozenset[int]]:
    """Each container's initial nodes as zoned's placement gives them (its ``min``)."""
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
