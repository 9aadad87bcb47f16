"""Initial placement: which whole nodes each container gets for its ``min``, as a pure function.

Rules, in order (each assignment carries the rule as its reason):

1. A node without memory is owned by nobody (``memoryless``).
2. Declared reserved nodes are ``reserved`` (node 0 by default: it holds ZONE_DMA and the
   host's own processes).
3. The shared zone: the declared node list, or ``shared_count`` pool nodes taken from the
   top of the node range (high ids), so low ids stay contiguous for containers.
4. Containers get whole nodes until the *usable* capacity of their nodes (MemTotal less the
   headroom they must keep free) reaches their ``min``. Largest ``min`` first (ties: higher
   priority, then name), best fit: the smallest free node that completes the ``min``, else
   the largest free node and continue. A ``min`` given in nodes takes that many nodes,
   smallest first.
5. Everything left is ``free``: the pool that is lent on demand.

When the sum of ``min`` does not fit the pool, ``PlacementError`` names every container
with its numbers. The same input always gives the same placement.
"""

from __future__ import annotations

from dataclasses import dataclass

from zoned.config.decl import AmountUnit, ContainerDecl, Declarations
from zoned.errors import PlacementError
from zoned.model.nodelist import format_nodelist
from zoned.model.sizes import format_size
from zoned.model.zonemap import (
    FREE,
    MEMORYLESS,
    RESERVED,
    SHARED,
    Assignment,
    Owner,
    Topology,
    ZoneMap,
)


def usable(total: int, headroom_pct: float) -> int:
    """What a container may fill of ``total`` bytes of zones while keeping its headroom."""
    return int(total * (100.0 - headroom_pct) / 100.0)


@dataclass(frozen=True)
class ContainerPlan:
    """One container's part of a placement, for reports."""

    name: str
    nodes: tuple[int, ...]
    capacity: int  # MemTotal of its nodes
    usable: int  # capacity less headroom
    need: str  # what its min asked for, in words


@dataclass(frozen=True)
class Placement:
    zonemap: ZoneMap
    containers: tuple[ContainerPlan, ...]


def _check_nodes(topology: Topology, decls: Declarations) -> None:
    known = set(topology.node_ids)
    bad = [n for n in (*decls.host.reserved_nodes, *decls.host.shared_nodes) if n not in known]
    if bad:
        raise PlacementError(
            f"node {format_nodelist(bad)} declared reserved or shared does not exist "
            f"(this machine has nodes {format_nodelist(known)})"
        )
    overlap = set(decls.host.reserved_nodes) & set(decls.host.shared_nodes)
    if overlap:
        raise PlacementError(
            f"node {format_nodelist(overlap)} is declared both reserved and shared"
        )


def _min_fits(c: ContainerDecl, sizes: list[int], headroom_pct: float) -> bool:
    if c.min.unit is AmountUnit.NODES:
        return len(sizes) >= c.min.value
    return usable(sum(sizes), headroom_pct) >= c.min.value


def _pick(c: ContainerDecl, free: dict[int, int], headroom_pct: float) -> list[int] | None:
    """Nodes for ``c``'s min from ``free`` (node → MemTotal), or None when they don't fit."""
    order = sorted(free, key=lambda n: (free[n], n))  # smallest first, then id
    if c.min.unit is AmountUnit.NODES:
        return order[: c.min.value] if len(order) >= c.min.value else None
    if c.min.value == 0:
        return []
    chosen: list[int] = []
    remaining = list(order)
    while remaining:
        have = [free[n] for n in chosen]
        # best fit: the smallest node that completes the min
        for n in remaining:
            if _min_fits(c, [*have, free[n]], headroom_pct):
                return [*chosen, n]
        largest = max(remaining, key=lambda n: (free[n], -n))
        chosen.append(largest)
        remaining.remove(largest)
    return None


def _need_words(c: ContainerDecl, headroom_pct: float) -> str:
    if c.min.unit is AmountUnit.NODES:
        return f"min {c.min}"
    return f"min {c.min} (fits {100 - headroom_pct:g}% of its zones)"


def _check_max(c: ContainerDecl, nodes: list[int], sizes: dict[int, int], headroom: float) -> None:
    """A min that can only be met with more than max allows is a contradiction."""
    if c.max.unit is AmountUnit.NODES and len(nodes) > c.max.value:
        raise PlacementError(
            f"{c.name}: min {c.min} needs {len(nodes)} nodes here, but max is {c.max}"
        )
    if c.max.unit is AmountUnit.BYTES and c.min.unit is AmountUnit.NODES:
        smallest = sum(sorted(sizes[n] for n in nodes)[:-1]) if nodes else 0
        if usable(smallest, headroom) >= c.max.value:
            raise PlacementError(
                f"{c.name}: min {c.min} already exceeds max {c.max} on these node sizes"
            )


def place(topology: Topology, decls: Declarations) -> Placement:
    """Place every declared container's ``min`` on whole nodes; see the module rules."""
    _check_nodes(topology, decls)
    host = decls.host
    amap: dict[int, Assignment] = {}
    for info in topology.nodes:
        if not info.has_memory:
            amap[info.id] = Assignment(info.id, MEMORYLESS, "node has no memory")
    for n in host.reserved_nodes:
        if n not in amap:
            amap[n] = Assignment(n, RESERVED, "declared reserved (host and kernel)")
    for n in host.shared_nodes:
        if n not in amap:
            amap[n] = Assignment(n, SHARED, "declared shared zone")
    pool = [n.id for n in topology.nodes if n.id not in amap]
    if host.shared_count:
        if host.shared_count > len(pool):
            raise PlacementError(
                f"shared zone of {host.shared_count} nodes asked, the pool has {len(pool)}"
            )
        for n in pool[-host.shared_count :]:
            amap[n] = Assignment(n, SHARED, f"shared zone ({host.shared_count} by count)")
    sizes = {n.id: n.mem_total for n in topology.nodes}
    free = {n: sizes[n] for n in topology.node_ids if n not in amap}
    pool_total = sum(free.values())

    order = sorted(
        decls.containers,
        key=lambda c: (
            c.min.unit is AmountUnit.BYTES,  # whole-node mins first: they can't bend
            -c.min.value if c.min.unit is AmountUnit.NODES else 0,
            -c.min.value if c.min.unit is AmountUnit.BYTES else 0,
            -c.priority,
            c.name,
        ),
    )
    plans: dict[str, ContainerPlan] = {}
    unplaced: list[ContainerDecl] = []
    for c in order:
        nodes = _pick(c, free, host.headroom_pct)
        if nodes is None:
            unplaced.append(c)
            continue
        _check_max(c, nodes, sizes, host.headroom_pct)
        cap = sum(sizes[n] for n in nodes)
        need = _need_words(c, host.headroom_pct)
        for n in nodes:
            del free[n]
            amap[n] = Assignment(n, Owner.of(c.name), f"{c.name}: {need}")
        plans[c.name] = ContainerPlan(
            c.name, tuple(sorted(nodes)), cap, usable(cap, host.headroom_pct), need
        )
    if unplaced:
        raise PlacementError(_does_not_fit(decls, plans, unplaced, len(pool), pool_total))
    for n in free:
        amap[n] = Assignment(n, FREE, "free pool node, lent on demand")
    return Placement(
        ZoneMap(dict(sorted(amap.items()))),
        tuple(plans[c.name] for c in decls.containers),
    )


def _does_not_fit(
    decls: Declarations,
    plans: dict[str, ContainerPlan],
    unplaced: list[ContainerDecl],
    pool_nodes: int,
    pool_total: int,
) -> str:
    lines = [
        f"the containers' min does not fit the pool ({pool_nodes} nodes, "
        f"{format_size(pool_total)}, {decls.host.headroom_pct:g}% headroom kept):"
    ]
    for c in decls.containers:
        p = plans.get(c.name)
        if p is not None:
            lines.append(
                f"  {c.name}: min {c.min} placed on node {format_nodelist(p.nodes)} "
                f"({format_size(p.usable)} usable)"
            )
    for c in unplaced:
        lines.append(f"  {c.name}: min {c.min} does not fit in what is left")
    return "\n".join(lines)
