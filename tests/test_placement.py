"""Placement: exact cases on real-looking topologies, and invariants over random ones."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zoned.config.decl import Amount, AmountUnit, ContainerDecl, Declarations, HostDecl
from zoned.errors import PlacementError
from zoned.model.sizes import MIB
from zoned.model.zonemap import NodeInfo, OwnerKind, Topology
from zoned.policy.placement import Placement, place, usable


def topo(*sizes_mib: int) -> Topology:
    return Topology(
        tuple(NodeInfo(i, s * MIB, s * MIB // 2, 0) for i, s in enumerate(sizes_mib)),
        fake_numa=str(len(sizes_mib)),
    )


def ctr(name: str, min_: Amount, max_: Amount | None = None, priority: int = 0) -> ContainerDecl:
    return ContainerDecl(name, min_, max_ or Amount.nodes(64), priority)


def decls(*cs: ContainerDecl, **host: object) -> Declarations:
    return Declarations(host=HostDecl(**host), containers=cs)  # type: ignore[arg-type]


def owners(p: Placement) -> dict[int, str]:
    return {a.node: str(a.owner) for a in p.zonemap}


def test_eight_equal_nodes_node0_reserved_and_best_fit() -> None:
    t = topo(*([256] * 8))
    d = decls(
        ctr("web", Amount.bytes_(400 * MIB), priority=10),
        ctr("batch", Amount.nodes(1)),
        ctr("cache", Amount.bytes_(100 * MIB)),
    )
    p = place(t, d)
    # batch's whole-node min goes first; then web (largest byte min) takes two nodes
    # because 400M > 85% of 256M; cache takes one.
    assert owners(p) == {
        0: "reserved",
        1: "batch",
        2: "web",
        3: "web",
        4: "cache",
        5: "free",
        6: "free",
        7: "free",
    }
    web = next(c for c in p.containers if c.name == "web")
    assert web.capacity == 512 * MIB
    assert web.usable == usable(512 * MIB, 15.0)
    assert [c.name for c in p.containers] == ["web", "batch", "cache"]  # declaration order


def test_uneven_nodes_best_fit_picks_smallest_node_that_completes_min() -> None:
    # numa=fake=256M on 2 GiB, measured: 288/256/256/256/208/256/479 MiB
    t = topo(288, 256, 256, 256, 208, 256, 479)
    p = place(t, decls(ctr("db", Amount.bytes_(300 * MIB)), ctr("small", Amount.bytes_(150 * MIB))))
    # 300M needs more than 85% of any node except 479M (407M usable): best fit is node 6.
    # 150M fits 85% of 208M (176M): the smallest such node is node 4.
    assert owners(p)[6] == "db"
    assert owners(p)[4] == "small"


def test_shared_by_count_takes_the_top_of_the_pool() -> None:
    p = place(topo(*([256] * 8)), decls(ctr("a", Amount.nodes(2)), shared_count=2))
    o = owners(p)
    assert (o[6], o[7]) == ("shared", "shared")
    assert (o[1], o[2]) == ("a", "a")


def test_memoryless_node_is_nobodys() -> None:
    t = Topology((NodeInfo(0, 256 * MIB, 0, 0), NodeInfo(1, 0, 0, 0), NodeInfo(2, 256 * MIB, 0, 0)))
    p = place(t, decls(ctr("a", Amount.nodes(1))))
    assert p.zonemap.owner(1).kind is OwnerKind.MEMORYLESS
    assert owners(p)[2] == "a"


def test_min_that_does_not_fit_names_every_container_and_the_numbers() -> None:
    t = topo(*([256] * 4))  # pool: nodes 1-3
    d = decls(ctr("web", Amount.bytes_(400 * MIB)), ctr("db", Amount.nodes(2)))
    with pytest.raises(PlacementError) as e:
        place(t, d)
    assert str(e.value) == (
        "the containers' min does not fit the pool (3 nodes, 768M, 15% headroom kept):\n"
        "  db: min 2 nodes placed on node 1-2 (435M usable)\n"
        "  web: min 400M does not fit in what is left"
    )


def test_min_in_nodes_beyond_max_in_nodes_is_refused() -> None:
    with pytest.raises(PlacementError, match=r"a: min 3 nodes needs 3 nodes here, but max is 2"):
        place(topo(*([256] * 8)), decls(ctr("a", Amount.nodes(3), Amount.nodes(2))))


def test_unknown_reserved_node_is_refused() -> None:
    with pytest.raises(PlacementError, match="node 9 declared reserved or shared does not exist"):
        place(topo(256, 256), decls(reserved_nodes=(0, 9)))


# ---------------------------------------------------------------------------------------
# Invariants over random topologies and declarations

node_sizes = st.lists(st.integers(32, 4096), min_size=1, max_size=16)


@st.composite
def amounts(draw: st.DrawFn) -> Amount:
    if draw(st.booleans()):
        return Amount.nodes(draw(st.integers(0, 4)))
    return Amount.bytes_(draw(st.integers(0, 3000)) * MIB)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Topology, Declarations]:
    sizes = draw(node_sizes)
    memoryless = draw(st.sets(st.integers(1, max(1, len(sizes) - 1)), max_size=2))
    nodes = tuple(NodeInfo(i, 0 if i in memoryless else s * MIB, 0, 0) for i, s in enumerate(sizes))
    n = draw(st.integers(0, 6))
    cs = []
    for i in range(n):
        lo = draw(amounts())
        hi = Amount(lo.value + draw(st.integers(0, 4)), lo.unit)
        if lo.unit is AmountUnit.BYTES:
            hi = Amount.bytes_(lo.value + draw(st.integers(0, 2000)) * MIB)
        cs.append(ContainerDecl(f"c{i}", lo, hi, draw(st.integers(-5, 5))))
    head = draw(st.sampled_from([0.0, 10.0, 15.0, 30.0]))
    shared = draw(st.integers(0, 2))
    return Topology(nodes), decls(*cs, headroom_pct=head, shared_count=shared)


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_placement_invariants(s: tuple[Topology, Declarations]) -> None:
    t, d = s
    try:
        p = place(t, d)
    except PlacementError:
        return
    sizes = {n.id: n.mem_total for n in t.nodes}
    # each node exactly one owner, and every node is in the map
    assert sorted(a.node for a in p.zonemap) == sorted(t.node_ids)
    for c in d.containers:
        got = p.zonemap.nodes_of(c.name)
        cap = usable(sum(sizes[n] for n in got), d.host.headroom_pct)
        # holds at least its min
        if c.min.unit is AmountUnit.NODES:
            assert len(got) >= c.min.value
        else:
            assert cap >= c.min.value
        # never beyond its max
        if c.max.unit is AmountUnit.NODES:
            assert len(got) <= c.max.value
        # never more nodes than its min needs: without its smallest node it would fall short
        if got and c.min.unit is AmountUnit.BYTES:
            rest = sum(sorted(sizes[n] for n in got)[1:])
            assert usable(rest, d.host.headroom_pct) < c.min.value or len(got) == 1
        assert all(sizes[n] > 0 for n in got)
        assert not (got & set(d.host.reserved_nodes))
    # same input, same placement
    assert place(t, d) == p


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 16), st.lists(st.integers(0, 3), max_size=6))
def test_equal_nodes_never_refused_when_node_mins_fit(count: int, mins: list[int]) -> None:
    t = topo(*([256] * count))
    d = decls(*(ctr(f"c{i}", Amount.nodes(m)) for i, m in enumerate(mins)))
    if sum(mins) <= count - 1:
        place(t, d)
    else:
        with pytest.raises(PlacementError):
            place(t, d)
