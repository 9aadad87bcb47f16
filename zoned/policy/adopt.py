"""The zone map at start: adopt what the host holds where it is consistent, place the rest.

**The kernel's cgroup tree is the source of truth**: a declared container that exists and
is consistent (its nodes are pool nodes nobody else holds, within its ``min``..``max``, the
shared zone exactly as declared) keeps what it holds; only the others are placed, on the
nodes left. The hints (``zoned.service.statefile``) only supply the reason and time of each
assignment. Pure: the daemon reads the host and the hints and passes them in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from zoned.config.decl import ContainerDecl, Declarations
from zoned.errors import PlacementError
from zoned.model.hints import Hint, engine_time
from zoned.model.host import CgroupState
from zoned.model.nodelist import format_nodelist
from zoned.model.zonemap import RESERVED, SHARED, Assignment, Owner, OwnerKind, Topology, ZoneMap
from zoned.policy.decide import keeps_min, may_grow
from zoned.policy.placement import place


def _consistent(
    decl: ContainerDecl,
    st: CgroupState,
    zmap: ZoneMap,
    *,
    taken: set[int],
    sizes: Mapping[int, int],
    headroom: float,
) -> str | None:
    """Why the host's cgroup for ``decl`` cannot be adopted as it is (None: it can)."""
    shared = zmap.nodes_with(SHARED)
    own = st.nodes - shared
    if not own:
        return "it holds no pool node"
    if decl.shared and st.nodes & shared != shared:
        return "it lacks the shared zone it is declared to use"
    if not decl.shared and st.nodes & shared:
        return "it holds the shared zone but is not declared shared"
    bad = sorted(
        n
        for n in own
        if n not in zmap.assignments
        or zmap.owner(n).kind in (OwnerKind.RESERVED, OwnerKind.MEMORYLESS)
    )
    if bad:
        return f"it holds node {format_nodelist(bad)}, which is not a pool node"
    if own & taken:
        return f"node {format_nodelist(own & taken)} is held by another container too"
    caps = [sizes.get(n, 0) for n in own]
    if not keeps_min(decl, caps, headroom):
        return f"its nodes no longer meet its min ({decl.min})"
    if not may_grow(decl, caps[1:], headroom):
        return f"it holds more than its max ({decl.max})"
    return None


def initial_map(
    topology: Topology,
    decls: Declarations,
    existing: Mapping[str, CgroupState],
    hints: Mapping[int, Hint],
    *,
    now: float,
    wall_now: float,
) -> tuple[ZoneMap, list[str]]:
    """The zone map to start with, adopting what the host holds; returns notes to log.

    Raises PlacementError when even a fresh placement does not fit.
    """
    fresh = place(topology, decls).zonemap
    sizes = {n.id: n.mem_total for n in topology.nodes}
    notes: list[str] = []
    adopted: dict[str, frozenset[int]] = {}
    taken: set[int] = set()
    for decl in decls.containers:
        st = existing.get(decl.name)
        if st is None:
            continue
        why = _consistent(
            decl, st, fresh, taken=taken, sizes=sizes, headroom=decls.host.headroom_pct
        )
        if why is not None:
            notes.append(f"{decl.name}: not adopted as it is: {why}; placing it afresh")
            continue
        own = st.nodes - fresh.nodes_with(SHARED)
        adopted[decl.name] = own
        taken |= own
    rest = [c for c in decls.containers if c.name not in adopted]
    amap: dict[int, Assignment] = {}
    if adopted:
        host = dataclasses.replace(
            decls.host,
            shared_nodes=tuple(sorted(fresh.nodes_with(SHARED))),
            shared_count=0,
        )
        sub = Topology(tuple(n for n in topology.nodes if n.id not in taken))
        try:
            placed = place(sub, dataclasses.replace(decls, host=host, containers=tuple(rest)))
        except PlacementError as exc:
            notes.append(
                f"the containers found on the host leave too little for the others "
                f"({exc}); placing everyone afresh, which moves pages"
            )
            adopted = {}
            placed_map = fresh
        else:
            placed_map = placed.zonemap
        amap.update(placed_map.assignments)
        for name, own in adopted.items():
            for n in own:
                amap[n] = Assignment(n, Owner.of(name), f"{name}: held on the host at start")
            notes.append(f"{name}: adopted on node {format_nodelist(own)} as the host holds it")
    else:
        amap.update(fresh.assignments)
    # The hints only explain: they never change an owner.
    for n, a in list(amap.items()):
        h = hints.get(n)
        if h is not None and h.owner == str(a.owner):
            since = engine_time(h, engine_now=now, wall_now=wall_now)
            amap[n] = Assignment(n, a.owner, h.reason, min(since, now))
        else:
            amap[n] = Assignment(n, a.owner, a.reason, now)
    return ZoneMap(dict(sorted(amap.items()))), notes


def single_node_map(topology: Topology, decls: Declarations, now: float) -> ZoneMap:
    """The map on a one-node machine: nothing can be lent; every node is reserved."""
    return ZoneMap(
        {
            n.id: Assignment(n.id, RESERVED, "single-node machine: nothing to lend", now)
            for n in topology.nodes
        }
    )
