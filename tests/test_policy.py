"""The policy as a pure function on hand-built snapshots."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import pytest

from tests.support.policy import (
    NODE,
    NOW,
    TRIP,
    c,
    decls,
    full,
    moves,
    run,
    snap,
    view,
    zmap,
)
from zoned.config.decl import Amount, ContainerDecl
from zoned.model.actions import DirectedReclaim, Lend, Reclaim, RecordOom, Return, SetTripwire
from zoned.model.sizes import MIB
from zoned.policy.decide import PolicyState

# ---------------------------------------------------------------------------------------
# growing


def test_anon_over_tripwire_lends_the_lowest_free_node_with_a_reason() -> None:
    d = decls(c("web"))
    m = zmap({1: "web", 2: None, 3: None})
    dec = run(snap(view("web", {1}, anon=450 * MIB, tripped=True)), d, m)
    assert moves(dec) == [
        Lend(2, "web", "web: anon 450M of 512M capacity crossed tripwire 85%; lent node 2 (free)")
    ]
    assert dec.needy == {"web"}


def test_level_not_event_decides_anon_over_tripwire_grows_without_an_event() -> None:
    m = zmap({1: "web", 2: None})
    dec = run(snap(view("web", {1}, anon=TRIP)), decls(c("web")), m)
    assert [type(a) for a in moves(dec)] == [Lend]


def test_tripwire_events_alone_do_nothing_when_anon_is_under_it() -> None:
    """Acting on counter deltas lends a second node for nothing (KERNEL-NOTES): a
    tripwire event with anon under the tripwire is a wake-up, not a decision."""
    m = zmap({1: "web", 2: None})
    for _ in range(3):
        dec = run(snap(view("web", {1}, anon=TRIP - MIB, tripped=True)), decls(c("web")), m)
        assert moves(dec) == []


def test_cache_only_fill_does_not_grow() -> None:
    m = zmap({1: "web", 2: None})
    v = view("web", {1}, anon=100 * MIB, file=400 * MIB, tripped=True)
    dec = run(snap(v), decls(c("web")), m)
    assert moves(dec) == []
    assert dec.needy == frozenset()
    assert any("page cache" in r and "not growing" in r for r in dec.reasons)


def test_stall_of_a_cache_reader_does_not_grow_it() -> None:
    m = zmap({1: "web", 2: None})
    v = view("web", {1}, anon=100 * MIB, file=400 * MIB, stalled=True)
    assert moves(run(snap(v), decls(c("web")), m)) == []


def test_real_stall_with_full_zones_grows_when_anon_fills_half() -> None:
    m = zmap({1: "web", 2: None})
    v = view("web", {1}, anon=300 * MIB, file=200 * MIB, stalled=True)
    dec = run(snap(v), decls(c("web")), m)
    assert [(type(a), a.node) for a in moves(dec) if isinstance(a, Lend)] == [(Lend, 2)]
    assert "stalled with its zones full" in moves(dec)[0].reason  # type: ignore[attr-defined]


def test_stall_inside_cooldown_waits() -> None:
    m = zmap({1: "web", 2: None})
    v = view("web", {1}, anon=300 * MIB, file=200 * MIB, stalled=True, last_change=NOW - 3)
    dec = run(snap(v), decls(c("web"), cooldown_s=10), m)
    assert moves(dec) == []
    assert any("cooldown 10s" in r for r in dec.reasons)
    # ...and after the cooldown the same stall grows it
    v2 = replace(v, last_change=NOW - 11)
    assert [type(a) for a in moves(run(snap(v2), decls(c("web"), cooldown_s=10), m))] == [Lend]


def test_never_beyond_max() -> None:
    m = zmap({1: "web", 2: "web", 3: None})
    dec = run(snap(view("web", {1, 2}, anon=2 * TRIP)), decls(c("web", hi=2)), m)
    assert moves(dec) == []
    assert any("at its max (2 nodes)" in r for r in dec.reasons)


def test_max_in_bytes_counts_usable_capacity() -> None:
    web = ContainerDecl("web", Amount.nodes(1), Amount.bytes_(400 * MIB))
    m = zmap({1: "web", 2: None})
    # usable(512M) = 435M >= 400M: may not grow
    dec = run(snap(view("web", {1}, anon=TRIP)), decls(web), m)
    assert moves(dec) == []


def test_busy_nodes_are_not_lent() -> None:
    m = zmap({1: "web", 2: None, 3: None})
    dec = run(snap(view("web", {1}, anon=TRIP), busy=frozenset({2})), decls(c("web")), m)
    assert [a.node for a in moves(dec) if isinstance(a, Lend)] == [3]


def test_pending_container_is_left_alone() -> None:
    m = zmap({1: "web", 2: None})
    v = view("web", {1}, anon=TRIP, tripped=True, pending=("lend node 2 to web (give)",))
    dec = run(snap(v), decls(c("web")), m)
    assert dec.actions == ()


def test_most_important_needy_container_gets_the_only_free_node() -> None:
    m = zmap({1: "a", 2: "b", 3: None})
    dec = run(
        snap(view("a", {1}, anon=TRIP), view("b", {2}, anon=TRIP)),
        decls(c("a", prio=0), c("b", prio=5)),
        m,
    )
    lends = [a for a in moves(dec) if isinstance(a, Lend)]
    assert [(x.node, x.to) for x in lends] == [(3, "b")]


# ---------------------------------------------------------------------------------------
# reclaiming from a donor


def test_no_free_node_reclaims_from_lowest_priority_donor_first() -> None:
    d = decls(c("web", prio=10), c("batch", prio=0), c("idle", prio=5))
    s = snap(
        view("web", {1}, anon=TRIP),
        view("batch", {2, 3}, anon=50 * MIB, per_node={2: 40 * MIB, 3: 10 * MIB}),
        view("idle", {4, 5}, anon=10 * MIB),
    )
    dec = run(s, d, full())
    assert moves(dec) == [
        Reclaim(
            3,
            "batch",
            "web",
            "web: anon 435M of 512M capacity crossed tripwire 85%; no free node; "
            "reclaimed node 3 from batch (priority 0, idle 10s), evacuated first",
        )
    ]


def test_ladder_lends_a_free_node_before_reclaiming_from_anyone() -> None:
    d = decls(c("web", prio=10), c("batch"))
    m = zmap({1: "web", 2: "batch", 3: "batch", 4: None})
    s = snap(view("web", {1}, anon=TRIP), view("batch", {2, 3}))
    assert [(type(a), a.node) for a in moves(run(s, d, m))] == [(Lend, 4)]  # type: ignore[attr-defined]


def test_same_priority_most_idle_donor_gives() -> None:
    d = decls(c("web", prio=10), c("batch"), c("idle"))
    s = snap(
        view("web", {1}, anon=TRIP),
        view("batch", {2, 3}, anon=10 * MIB),
        view("idle", {4, 5}, anon=10 * MIB),
    )
    state = PolicyState(started=0.0, last_need=MappingProxyType({"batch": 900.0, "idle": 100.0}))
    dec = run(s, d, full(), state)
    assert [(a.from_, a.to) for a in moves(dec) if isinstance(a, Reclaim)] == [("idle", "web")]
    state2 = PolicyState(started=0.0, last_need=MappingProxyType({"batch": 50.0, "idle": 100.0}))
    dec2 = run(s, d, full(), state2)
    assert [a.from_ for a in moves(dec2) if isinstance(a, Reclaim)] == ["batch"]


def test_donor_never_goes_below_min() -> None:
    d = decls(c("web", prio=10), c("batch", lo=2), c("idle", lo=2))
    s = snap(view("web", {1}, anon=TRIP), view("batch", {2, 3}), view("idle", {4, 5}))
    dec = run(s, d, full())
    assert moves(dec) == []
    assert any("nothing can be lent" in r and "batch at its min" in r for r in dec.reasons)


def test_donor_in_cooldown_is_skipped() -> None:
    d = decls(c("web", prio=10), c("batch"), c("idle"), cooldown_s=10)
    s = snap(
        view("web", {1}, anon=TRIP),
        view("batch", {2, 3}, last_change=NOW - 2),
        view("idle", {4, 5}, last_change=NOW - 20),
    )
    dec = run(s, d, full())
    assert [a.from_ for a in moves(dec) if isinstance(a, Reclaim)] == ["idle"]


def test_active_higher_priority_container_is_no_donor_but_idle_one_is() -> None:
    d = decls(c("web", prio=0), c("db", prio=10), idle_return_s=300)
    m = zmap({1: "web", 2: "db", 3: "db"})
    s = snap(view("web", {1}, anon=TRIP), view("db", {2, 3}))
    active = PolicyState(started=0.0, last_need=MappingProxyType({"db": NOW - 10}))
    assert moves(run(s, d, m, active)) == []
    idle = PolicyState(started=0.0, last_need=MappingProxyType({"db": NOW - 400}))
    assert [a.from_ for a in moves(run(s, d, m, idle)) if isinstance(a, Reclaim)] == ["db"]


def test_donor_whose_anon_would_not_fit_gives_nothing() -> None:
    d = decls(c("web", prio=10), c("batch"))
    m = zmap({1: "web", 2: "batch", 3: "batch"})
    s = snap(view("web", {1}, anon=TRIP), view("batch", {2, 3}, anon=600 * MIB))
    assert moves(run(s, d, m)) == []


def test_directed_reclaim_first_when_donor_pages_do_not_fit() -> None:
    d = decls(c("web", prio=10), c("batch"))
    m = zmap({1: "web", 2: "batch", 3: "batch"})
    b = view("batch", {2, 3}, anon=200 * MIB, file=500 * MIB, per_node={2: 500 * MIB, 3: 200 * MIB})
    dec = run(snap(view("web", {1}, anon=TRIP), b), d, m)
    acts = moves(dec)
    assert [type(a) for a in acts] == [DirectedReclaim, Reclaim]
    dr = acts[0]
    assert isinstance(dr, DirectedReclaim)
    # keep: 85% of one node; has 700M; drop the difference, all of it page cache
    assert dr.container == "batch" and dr.nbytes == 700 * MIB - TRIP
    assert isinstance(acts[1], Reclaim) and acts[1].node == 3  # the less used node


def test_reclaim_before_evacuate_can_be_turned_off() -> None:
    d = decls(c("web", prio=10), c("batch"), reclaim_before_evacuate=False)
    m = zmap({1: "web", 2: "batch", 3: "batch"})
    b = view("batch", {2, 3}, anon=200 * MIB, file=500 * MIB)
    assert [type(a) for a in moves(run(snap(view("web", {1}, anon=TRIP), b), d, m))] == [Reclaim]


def test_one_donor_gives_one_node_per_decision() -> None:
    d = decls(c("a", prio=10), c("b", prio=10), c("batch", hi=6))
    m = zmap({1: "a", 2: "b", 3: "batch", 4: "batch", 5: "batch"})
    s = snap(view("a", {1}, anon=TRIP), view("b", {2}, anon=TRIP), view("batch", {3, 4, 5}))
    rec = [a for a in moves(run(s, d, m)) if isinstance(a, Reclaim)]
    assert len(rec) == 1


# ---------------------------------------------------------------------------------------
# OOM, idle return, tripwires, purity


def test_oom_is_recorded_with_why_nothing_could_be_lent() -> None:
    d = decls(c("web", hi=1))
    m = zmap({1: "web", 2: None})
    dec = run(snap(view("web", {1}, anon=NODE, oom_kills=2)), d, m)
    assert len(dec.actions) == 1
    oom = dec.actions[0]
    assert isinstance(oom, RecordOom) and oom.kills == 2
    assert oom.reason.startswith("web: the kernel OOM-killed 2 processes inside its zones")
    assert oom.reason.endswith("at its max (1 node)")


def test_oom_after_the_kill_says_what_could_have_been_lent() -> None:
    """The snapshot comes after the kill (anon 0): the record speaks of the ladder."""
    m = zmap({1: "web", 2: None})
    dec = run(snap(view("web", {1}, oom_kills=1)), decls(c("web")), m)
    assert [type(a) for a in dec.actions] == [RecordOom]
    assert dec.actions[0].reason == (
        "web: the kernel OOM-killed 1 process inside its zones (node 1, 512M); "
        "node 2 was free: the fill came faster than zoned saw it"
    )
    full_map = zmap({1: "web", 2: "db"})
    dec = run(
        snap(view("web", {1}, oom_kills=1), view("db", {2})), decls(c("web"), c("db")), full_map
    )
    assert dec.actions[0].reason.endswith("no free node; no donor (db at its min)")


def test_idle_container_returns_a_node_after_idle_return_s_only() -> None:
    d = decls(c("batch"), idle_return_s=300, shrink_below_pct=50)
    m = zmap({2: "batch", 3: "batch"})
    v = view("batch", {2, 3}, anon=100 * MIB, per_node={2: 100 * MIB, 3: 0})
    early = PolicyState(started=0.0, last_need=MappingProxyType({"batch": NOW - 299}))
    assert moves(run(snap(v), d, m, early)) == []
    late = PolicyState(started=0.0, last_need=MappingProxyType({"batch": NOW - 301}))
    dec = run(snap(v), d, m, late)
    assert moves(dec) == [
        Return(
            3,
            "batch",
            "batch: no need for more memory for 301s (idle_return_s 300s) and anon 100M "
            "would use 20% of node 2 (< 50%); "
            "returned node 3 to the pool",
        )
    ]


def test_idle_return_needs_usage_below_shrink_pct_and_above_min() -> None:
    late = PolicyState(started=0.0, last_need=MappingProxyType({}))
    m = zmap({2: "batch", 3: "batch"})
    busy = view("batch", {2, 3}, anon=300 * MIB)  # 59% of one node
    assert moves(run(snap(busy), decls(c("batch")), m, late)) == []
    small = view("batch", {2, 3}, anon=10 * MIB)
    assert moves(run(snap(small), decls(c("batch", lo=2)), m, late)) == []


def test_tripwire_follows_capacity_and_is_not_rewritten() -> None:
    m = zmap({1: "web", 2: "web"})
    same = view("web", {1, 2}, tripwire=int(2 * NODE * 0.85))
    assert run(snap(same), decls(c("web")), m).actions == ()
    stale = view("web", {1, 2}, tripwire=TRIP)
    dec = run(snap(stale), decls(c("web", lo=2)), m)
    assert dec.actions == (
        SetTripwire(
            "web", int(2 * NODE * 0.85), "web: capacity 1G (nodes 1-2); tripwire at 85% = 870M"
        ),
    )


def test_tripwire_leaves_out_the_kernels_reserve() -> None:
    """Issue 13: on a 208 MiB node with a 10 MiB min watermark, 85% of MemTotal left the
    eight-worker swarm 8 MiB above the tripwire before the node was full (7.3: one kill).
    The tripwire counts what containers can fill: MemTotal less the reserve."""
    m = zmap({1: "web", 2: "web"})
    s = snap(view("web", {1, 2}, tripwire=TRIP))
    nodes = {n: replace(v, reserve=10 * MIB) for n, v in s.nodes.items()}
    reserved = replace(s, nodes=MappingProxyType(nodes))
    (act,) = run(reserved, decls(c("web", lo=2)), m).actions
    assert isinstance(act, SetTripwire)
    assert act.nbytes == int(2 * (NODE - 10 * MIB) * 0.85), act
    assert reserved.capacity(frozenset({1, 2})) == 2 * (NODE - 10 * MIB)


def test_blocked_container_is_left_alone_until_hold_ends() -> None:
    m = zmap({1: "web", 2: None})
    v = view("web", {1}, anon=TRIP)
    held = PolicyState(blocked=MappingProxyType({"web": (NOW + 5, "gave up: EBUSY")}))
    assert run(snap(v), decls(c("web")), m, held).actions == ()
    over = PolicyState(blocked=MappingProxyType({"web": (NOW - 1, "gave up: EBUSY")}))
    assert [type(a) for a in moves(run(snap(v), decls(c("web")), m, over))] == [Lend]


@pytest.mark.parametrize("anon", [0, TRIP - 1, TRIP, 2 * NODE])
def test_decide_is_pure(anon: int) -> None:
    d = decls(c("web"), c("batch"))
    m = zmap({1: "web", 2: "batch", 3: "batch"})
    s = snap(view("web", {1}, anon=anon, tripped=True), view("batch", {2, 3}))
    before = (s, m)
    a, b = run(s, d, m), run(s, d, m)
    assert a == b
    assert (s, m) == before


def test_shmem_counts_as_unreclaimable_not_as_page_cache() -> None:
    """tmpfs and shared anonymous memory show as ``file`` in memory.stat but cannot be
    dropped without swap (measured in the VM: such a container was never grown)."""
    m = zmap({1: "web", 2: None})
    tmpfs = view("web", {1}, anon=0, file=450 * MIB, shmem=450 * MIB, tripped=True)
    assert [type(a) for a in moves(run(snap(tmpfs), decls(c("web")), m))] == [Lend]
    cache = view("web", {1}, anon=0, file=450 * MIB, tripped=True)
    assert moves(run(snap(cache), decls(c("web")), m)) == []


def test_no_return_within_cooldown_even_with_a_shorter_idle_return() -> None:
    """cooldown_s bounds every move, returns included (issue 13: idle_return_s 2 and
    cooldown_s 12 returned a node 5.2 s after it was lent)."""
    d = decls(c("batch"), idle_return_s=2, cooldown_s=12, shrink_below_pct=50)
    m = zmap({2: "batch", 3: "batch"})
    idle = PolicyState(started=0.0, last_need=MappingProxyType({"batch": NOW - 5}))
    lent_5s_ago = view(
        "batch", {2, 3}, anon=100 * MIB, per_node={2: 100 * MIB, 3: 0}, last_change=NOW - 5
    )
    assert moves(run(snap(lent_5s_ago), d, m, idle)) == []
    lent_13s_ago = view(
        "batch", {2, 3}, anon=100 * MIB, per_node={2: 100 * MIB, 3: 0}, last_change=NOW - 13
    )
    assert [type(a) for a in moves(run(snap(lent_13s_ago), d, m, idle))] == [Return]
