"""A scenario on the simulated host with nobody juggling nodes: the baselines zoned is
measured against (static zones as placement deals them, or with the whole pool dealt out;
no isolation; fixed memcg limits).

It joins the simulated backend with the placement policy, so it sits above both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from zoned.backends.sim import Isolation, Sample, Scenario, SimStats
from zoned.config.decl import AmountUnit, ContainerDecl
from zoned.model.host import Event
from zoned.model.zonemap import FREE
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


def dealt_layout(scenario: Scenario) -> dict[str, frozenset[int]]:
    """Static zones with the whole pool dealt out at start, as a kubelet-style static
    partition would: each container first gets its ``min`` (placement's layout), then every
    node placement left free goes, lowest id first, to the container furthest below its
    share of the pool's nodes in proportion to its declared ``max`` (ties: higher priority,
    then declaration order), never past its ``max``. Nodes no container may take stay free.
    """
    sim = scenario.backend()
    zonemap = place(sim.topology(), scenario.decls).zonemap
    cs = scenario.decls.containers
    held = {c.name: set(zonemap.nodes_of(c.name)) for c in cs}
    free = sorted(zonemap.nodes_with(FREE))
    sizes = [
        n.size for n in scenario.nodes if n.id in free or any(n.id in h for h in held.values())
    ]
    node = sum(sizes) // len(sizes) if sizes else 1
    pool = sum(len(h) for h in held.values()) + len(free)
    cap = {c.name: _max_nodes(c, node) for c in cs}
    total = sum(cap.values()) or 1
    share = {c.name: pool * cap[c.name] / total for c in cs}
    order = {c.name: i for i, c in enumerate(cs)}
    prio = {c.name: c.priority for c in cs}
    for n in free:
        takers = [c.name for c in cs if len(held[c.name]) < cap[c.name]]
        if not takers:
            break
        best = max(takers, key=lambda x: (share[x] - len(held[x]), prio[x], -order[x]))
        held[best].add(n)
    return {name: frozenset(h) for name, h in held.items()}


def _max_nodes(c: ContainerDecl, node_size: int) -> int:
    if c.max.unit is AmountUnit.NODES:
        return c.max.value
    return max(1, -(-c.max.value // max(1, node_size)))


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
