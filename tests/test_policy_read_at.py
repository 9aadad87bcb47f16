"""A figure the engine kept from an earlier read (``ContainerView.read_at``) is measured
at the time it was read: it is no new rate sample and stretches no rate window."""

from __future__ import annotations

from types import MappingProxyType

from zoned.config.decl import Amount, ContainerDecl, Declarations
from zoned.model.sizes import MIB
from zoned.model.snapshot import ContainerView, NodeView, Snapshot
from zoned.model.zonemap import FREE, Assignment, Owner, ZoneMap
from zoned.policy.decide import PolicyState, decide

NODE = 512 * MIB


def _view(read_at: float | None, anon: int) -> ContainerView:
    return ContainerView(
        "web", frozenset({1}), anon, anon, 0, tripwire=int(NODE * 0.85), read_at=read_at
    )


def _decide(view: ContainerView, seen: tuple[float, int], now: float) -> tuple[object, ...]:
    snap = Snapshot(
        now,
        MappingProxyType({"web": view}),
        MappingProxyType({n: NodeView(n, NODE, 0) for n in range(2)}),
    )
    decls = Declarations(containers=(ContainerDecl("web", Amount.nodes(1), Amount.nodes(1)),))
    zm = ZoneMap({1: Assignment(1, Owner.of("web"), "t"), 0: Assignment(0, FREE, "t")})
    state = PolicyState(started=0.0, seen=MappingProxyType({"web": seen}))
    d = decide(snap, decls, zm, state, now)
    return d.seen["web"], d.needy


def test_a_stale_figure_is_no_new_rate_sample() -> None:
    # web's figure was read at 9.5; the sample it is measured from is (9.0, 100M).
    seen, needy = _decide(_view(9.5, 300 * MIB), (9.0, 100 * MIB), now=12.0)
    # Half a second is no rate window: no projection (the old code took 3 s and saw a
    # container about to fill its zone), and the sample is not renewed with a stale time.
    assert not needy
    assert seen == (9.0, 100 * MIB)
    seen, _ = _decide(_view(11.0, 300 * MIB), (9.0, 100 * MIB), now=12.0)
    assert seen == (11.0, 300 * MIB)  # renewed at the time it was read, not at 12
