"""Builders for the policy's inputs (declarations, zone maps, snapshots), and decide()."""

from __future__ import annotations

from types import MappingProxyType

from zoned.config.decl import Amount, ContainerDecl, Declarations, HostDecl, PolicyDecl
from zoned.model.actions import SetTripwire
from zoned.model.sizes import MIB
from zoned.model.snapshot import ContainerView, NodeView, Snapshot
from zoned.model.zonemap import FREE, RESERVED, Assignment, Owner, ZoneMap
from zoned.policy.decide import Decision, PolicyState, decide

NODE = 512 * MIB
TRIP = int(NODE * 0.85)  # tripwire of one node at the default 85%


def decls(*containers: ContainerDecl, **policy: float) -> Declarations:
    return Declarations(
        host=HostDecl(reserved_nodes=(0,)),
        policy=PolicyDecl(**policy),  # type: ignore[arg-type]
        containers=containers,
    )


def c(name: str, lo: int = 1, hi: int = 4, prio: int = 0) -> ContainerDecl:
    return ContainerDecl(name, Amount.nodes(lo), Amount.nodes(hi), priority=prio)


def zmap(owners: dict[int, str | None]) -> ZoneMap:
    """node → container name, None for free; node 0 reserved."""
    a = {0: Assignment(0, RESERVED, "reserved")}
    for n, who in owners.items():
        a[n] = Assignment(n, FREE if who is None else Owner.of(who), "test")
    return ZoneMap(a)


def view(
    name: str,
    nodes: set[int],
    anon: int = 0,
    file: int = 0,
    *,
    tripwire: int | None = -1,
    per_node: dict[int, int] | None = None,
    **kw: object,
) -> ContainerView:
    cap = NODE * len(nodes)
    if per_node is None:  # spread evenly
        per_node = {n: (anon + file) // len(nodes) for n in nodes}
    return ContainerView(
        name=name,
        nodes=frozenset(nodes),
        current=anon + file,
        anon=anon,
        file=file,
        per_node=MappingProxyType(per_node),
        tripwire=int(cap * 0.85) if tripwire == -1 else tripwire,
        **kw,  # type: ignore[arg-type]
    )


def snap(*views: ContainerView, nodes: int = 6, busy: frozenset[int] = frozenset()) -> Snapshot:
    return Snapshot(
        at=1000.0,
        containers=MappingProxyType({v.name: v for v in views}),
        nodes=MappingProxyType({n: NodeView(n, NODE, NODE // 2) for n in range(nodes)}),
        busy_nodes=busy,
    )


NOW = 1000.0
STATE = PolicyState(started=NOW - 10, last_need=MappingProxyType({}))


def run(s: Snapshot, d: Declarations, m: ZoneMap, state: PolicyState = STATE) -> Decision:
    return decide(s, d, m, state, NOW)


def full() -> ZoneMap:
    """Every pool node held: web 1, batch 2-3, idle 4-5."""
    return zmap({1: "web", 2: "batch", 3: "batch", 4: "idle", 5: "idle"})


def moves(dec: Decision) -> list[object]:
    """The actions other than tripwire updates."""
    return [a for a in dec.actions if not isinstance(a, SetTripwire)]
