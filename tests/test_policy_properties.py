"""Properties of ``decide`` over random hand-built snapshots: whatever the host looks like,
the actions respect ownership, min, max, the nodes in flight and the containers busy."""

from __future__ import annotations

from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from zoned.config.decl import Amount, ContainerDecl, Declarations, PolicyDecl
from zoned.model.actions import DirectedReclaim, Lend, Reclaim, RecordOom, Return, SetTripwire
from zoned.model.sizes import MIB
from zoned.model.snapshot import ContainerView, NodeView, Snapshot
from zoned.model.zonemap import FREE, RESERVED, Assignment, Owner, ZoneMap
from zoned.policy.decide import PolicyState, decide

NODE = 256 * MIB
NOW = 500.0


@st.composite
def cases(draw: st.DrawFn) -> tuple[Snapshot, Declarations, ZoneMap, PolicyState]:
    n_nodes = draw(st.integers(2, 10))
    names = [f"c{i}" for i in range(draw(st.integers(1, 5)))]
    owner_of = {n: draw(st.sampled_from([None, *names])) for n in range(1, n_nodes)}
    decls = []
    views = {}
    amap = {0: Assignment(0, RESERVED, "reserved")}
    for n, who in owner_of.items():
        amap[n] = Assignment(n, FREE if who is None else Owner.of(who), "t")
    busy = frozenset(draw(st.lists(st.integers(1, n_nodes - 1), max_size=2)))
    for name in names:
        mine = frozenset(n for n, w in owner_of.items() if w == name)
        lo = draw(st.integers(0, max(0, len(mine))))
        hi = draw(st.integers(max(lo, len(mine)), max(lo, len(mine)) + 3))
        decls.append(
            ContainerDecl(
                name, Amount.nodes(lo), Amount.nodes(hi), priority=draw(st.integers(0, 3))
            )
        )
        cap = NODE * len(mine)
        anon = draw(st.integers(0, cap + NODE))
        file = draw(st.integers(0, max(0, cap - anon)))
        per = {n: (anon + file) // len(mine) for n in mine} if mine else {}
        views[name] = ContainerView(
            name=name,
            nodes=mine,
            current=anon + file,
            anon=anon,
            file=file,
            per_node=MappingProxyType(per),
            tripwire=draw(st.one_of(st.none(), st.just(int(cap * 0.85)))),
            last_change=draw(st.one_of(st.none(), st.floats(0, NOW))),
            stalled=draw(st.booleans()),
            tripped=draw(st.booleans()),
            oom_kills=draw(st.integers(0, 2)),
            pending=draw(st.sampled_from([(), ("something (give)",)])),
        )
    snap = Snapshot(
        at=NOW,
        containers=MappingProxyType(views),
        nodes=MappingProxyType({n: NodeView(n, NODE, NODE // 2) for n in range(n_nodes)}),
        busy_nodes=busy,
    )
    policy = PolicyDecl(
        cooldown_s=draw(st.sampled_from([0.0, 10.0, 100.0])),
        idle_return_s=draw(st.sampled_from([0.0, 60.0, 1000.0])),
    )
    state = PolicyState(
        started=0.0,
        last_need=MappingProxyType({n: draw(st.floats(0, NOW)) for n in names}),
    )
    return snap, Declarations(policy=policy, containers=tuple(decls)), ZoneMap(amap), state


@settings(max_examples=300, deadline=None)
@given(cases())
def test_actions_respect_owners_min_max_busy(
    case: tuple[Snapshot, Declarations, ZoneMap, PolicyState],
) -> None:
    snap, decls, zm, state = case
    dec = decide(snap, decls, zm, state, NOW)
    assert dec == decide(snap, decls, zm, state, NOW)  # deterministic
    moved: list[int] = []
    count = {name: len(v.nodes) for name, v in snap.containers.items()}
    for i, a in enumerate(dec.actions):
        assert a.reason  # every action says why
        if isinstance(a, Lend | Reclaim | Return):
            assert a.node not in snap.busy_nodes
            moved.append(a.node)
        if isinstance(a, Lend):
            assert zm.owner(a.node) == FREE
            assert not snap.containers[a.to].pending
            count[a.to] += 1
        elif isinstance(a, Reclaim):
            assert zm.owner(a.node) == Owner.of(a.from_)
            assert not snap.containers[a.from_].pending and not snap.containers[a.to].pending
            assert decls.container(a.from_).priority <= decls.container(a.to).priority or (
                NOW - state.last_need[a.from_] >= decls.policy.idle_return_s
            )
            count[a.from_] -= 1
            count[a.to] += 1
        elif isinstance(a, Return):
            assert zm.owner(a.node) == Owner.of(a.from_)
            count[a.from_] -= 1
        elif isinstance(a, DirectedReclaim):
            nxt = dec.actions[i + 1]
            assert isinstance(nxt, Reclaim | Return) and nxt.from_ == a.container
            assert 0 < a.nbytes <= snap.containers[a.container].file
        elif isinstance(a, SetTripwire):
            assert a.nbytes != snap.containers[a.container].tripwire
        elif isinstance(a, RecordOom):
            assert snap.containers[a.container].oom_kills == a.kills > 0
    assert len(moved) == len(set(moved))  # a node moves at most once per decision
    for name, n in count.items():
        d = decls.container(name)
        if n != len(snap.containers[name].nodes):  # only what the decision changed
            assert d.min.value <= n <= d.max.value, name
