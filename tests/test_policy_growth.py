"""The policy's rate of growth: lending ahead of a full zone, several free nodes in one
decision, a second node from a donor in its cooldown while the receiver still rises, and
the rate samples a decision hands back (``Decision.seen``); then the same on the
simulated host through the engine."""

from __future__ import annotations

from types import MappingProxyType

from tests.support.policy import NOW, c, decls, full, moves, run, snap, view, zmap
from zoned.backends.sim import loads_scenario
from zoned.cli.commands.simulate import run_scenario
from zoned.model.actions import Lend, Reclaim
from zoned.model.sizes import MIB
from zoned.policy.decide import RATE_WINDOW_S, PolicyState, decide


def seen(**levels: tuple[float, int]) -> PolicyState:
    return PolicyState(started=NOW - 10, seen=MappingProxyType(levels))


def test_rising_fast_enough_to_fill_the_zone_before_the_next_look_is_lent_ahead() -> None:
    m = zmap({1: "web", 2: None})
    v = view("web", {1}, anon=400 * MIB)  # under the tripwire (435M of a 512M node)
    dec = run(snap(v), decls(c("web")), m, seen(web=(NOW - 1, 280 * MIB)))
    (lend,) = moves(dec)
    assert isinstance(lend, Lend) and lend.node == 2
    assert "rising 120M/s, would fill its zones within 1.0s" in lend.reason
    # The same level rising slowly: nothing yet (the tripwire will wake the engine).
    slow = run(snap(v), decls(c("web")), m, seen(web=(NOW - 1, 380 * MIB)))
    assert moves(slow) == []


def test_no_rate_from_a_sample_younger_than_the_window_or_from_a_fall() -> None:
    m = zmap({1: "web", 2: None})
    v = view("web", {1}, anon=400 * MIB)
    young = seen(web=(NOW - RATE_WINDOW_S / 2, 100 * MIB))
    assert moves(run(snap(v), decls(c("web")), m, young)) == []
    falling = seen(web=(NOW - 1, 500 * MIB))
    assert moves(run(snap(v), decls(c("web")), m, falling)) == []


def test_a_fast_ramp_is_lent_as_many_free_nodes_as_it_will_need_at_once() -> None:
    m = zmap({1: "web", 2: None, 3: None, 4: None})
    v = view("web", {1}, anon=450 * MIB, tripped=True)
    # 450M rising 400M/s: 850M a second from now, under two nodes' tripwire (870M): one
    # more node. At 500M/s, 950M: two more.
    two = run(snap(v), decls(c("web")), m, seen(web=(NOW - 1, 50 * MIB)))
    assert [a.node for a in moves(two) if isinstance(a, Lend)] == [2]
    three = run(snap(v), decls(c("web")), m, seen(web=(NOW - 1, -50 * MIB)))
    assert [a.node for a in moves(three) if isinstance(a, Lend)] == [2, 3]


def test_several_nodes_at_once_stop_at_max() -> None:
    m = zmap({1: "web", 2: None, 3: None, 4: None})
    v = view("web", {1}, anon=450 * MIB, tripped=True)
    dec = run(snap(v), decls(c("web", hi=2)), m, seen(web=(NOW - 1, 0)))
    assert [a.node for a in moves(dec) if isinstance(a, Lend)] == [2]


def test_donor_that_lost_its_last_node_gives_again_in_cooldown_to_a_rising_receiver() -> None:
    d = decls(c("web", prio=10), c("batch"), c("idle", lo=2), cooldown_s=10)
    m = full()
    web = view("web", {1}, anon=450 * MIB, tripped=True)
    batch = view("batch", {2, 3}, anon=10 * MIB, last_change=NOW - 2)  # just gave a node
    s = snap(web, batch, view("idle", {4, 5}))
    gave = PolicyState(
        started=NOW - 100,
        last_need=MappingProxyType({"batch": NOW - 50}),  # its last need is older: a loss
        seen=MappingProxyType({"web": (NOW - 1, 300 * MIB)}),
    )
    assert [(a.from_, a.to) for a in moves(run(s, d, m, gave)) if isinstance(a, Reclaim)] == [
        ("batch", "web")
    ]
    # Not rising: the cooldown holds.
    flat = PolicyState(started=NOW - 100, last_need=MappingProxyType({"batch": NOW - 50}))
    dec = run(s, d, m, flat)
    assert moves(dec) == []
    assert any("batch in cooldown" in r for r in dec.reasons)
    # Rising, but batch's last change was a gain (a need at the same instant): it holds.
    gained = PolicyState(
        started=NOW - 100,
        last_need=MappingProxyType({"batch": NOW - 2}),
        seen=MappingProxyType({"web": (NOW - 1, 300 * MIB)}),
    )
    assert moves(run(s, d, m, gained)) == []


def test_decision_hands_back_rate_samples_renewed_once_a_window_old() -> None:
    m = zmap({1: "web", 2: "db"})
    s = snap(view("web", {1}, anon=100 * MIB), view("db", {2}, anon=50 * MIB))
    state = PolicyState(
        seen=MappingProxyType({"web": (NOW - 0.2, 90 * MIB), "db": (NOW - 3, 10), "gone": (1, 1)})
    )
    out = decide(s, decls(c("web"), c("db")), m, state, NOW).seen
    assert dict(out) == {"web": (NOW - 0.2, 90 * MIB), "db": (NOW, 50 * MIB)}


RAMP_THROUGH_DONOR = """
name: ramp-through-donor
duration_s: 120
topology: {count: 5, size: 256M}
config:
  host: {reserved_nodes: [0]}
  policy: {cooldown_s: 10, idle_return_s: 300}
  containers:
    web:   {min: {nodes: 1}, max: {nodes: 3}, priority: 10}
    batch: {min: {nodes: 1}, max: {nodes: 3}, priority: 0}
workloads:
  batch:
    - {ramp: {anon: 600M, over_s: 10}}
    - {free: {anon: 420M}}
    - {idle_s: 1000}
  web:
    start_s: 60
    phases:
      - {alloc: {anon: 100M}}
      - {alloc: {anon: 400M, rate: 60M}}
      - {hold_s: 1000}
"""


def test_ramp_takes_a_second_node_from_the_same_donor_without_waiting_its_cooldown() -> None:
    """web ramps through two of batch's nodes; before the rule, the second waited out
    batch's cooldown while web sat throttled at memory.high (4.1 s of stall)."""
    r = run_scenario(loads_scenario(RAMP_THROUGH_DONOR), "zoned")
    at = [x.at for x in r.log if x.outcome == "started" and isinstance(x.action, Reclaim)]
    assert len(at) == 2 and at[1] - at[0] < 10
    assert r.oom_kills == 0
    web = next(s for s in r.summary if s.name == "web")
    assert web.stall_s is not None and web.stall_s < 0.5


def test_a_cache_crossing_while_anon_rises_is_not_dismissed() -> None:
    """Usage reached the tripwire with page cache while anon, just under it, rises fast:
    that crossing is the last warning (v1's threshold fires once), so it lends now
    (issue 13: "not growing" logged at ~100 MiB/s, then an OOM kill)."""
    m = zmap({1: "web", 2: None})
    # 512M node, tripwire 435M; anon 420M + 20M of cache; anon was 320M a second ago.
    v = view("web", {1}, anon=420 * MIB, file=20 * MIB, tripped=True)
    dec = run(snap(v), decls(c("web")), m, seen(web=(NOW - 1, 320 * MIB)))
    (lend,) = moves(dec)
    assert isinstance(lend, Lend) and lend.node == 2
    assert "rising to 520M" in lend.reason, lend.reason
    # The same crossing with anon flat is page cache only: not growing, nothing lent.
    flat = run(snap(v), decls(c("web")), m, seen(web=(NOW - 1, 420 * MIB)))
    assert moves(flat) == []
    assert any("not growing" in r for r in flat.reasons)
